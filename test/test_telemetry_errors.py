"""A telemetry failure (the decoder raising) is counted and logged in /diagnostics while the latent itself still goes
out: telemetry never costs a latent, and never fails silently."""
import rclpy
from rclpy.parameter import Parameter

from ros_helpers import camera_frames, header, wait_for
from sage_ros.runtime.backends import BackendError
from sage_ros.runtime.image_codec import numpy_to_image


def test_a_failing_telemetry_decode_is_counted_and_the_latent_still_published():
    from sage_ros.ros.encoder_node import SUCCESS, EncoderNode

    context = rclpy.Context()
    rclpy.init(context=context)
    node = EncoderNode("tinyvae", context=context, parameter_overrides=[
        Parameter("bundle", value="tinyvae_l8_fp32"), Parameter("backend", value="onnxruntime"),
        Parameter("device", value="cpu")])
    try:
        assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS

        def broken(z):
            raise BackendError("decoder exploded (test)")

        node.backend.decode = broken
        node._on_frame(0, numpy_to_image(camera_frames(1)[0], "rgb8", header=header(9)))
        wait_for(lambda: node.stats._counts["errors"] >= 1, 15, what="the telemetry error counted")
        snap = node.stats.snapshot()
        assert snap.counts["published"] == 1  # the latent went out
        assert "telemetry: decoder exploded" in snap.last_error
    finally:
        node.on_shutdown(None)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
