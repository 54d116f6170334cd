"""A telemetry failure (the decoder raising) is counted and logged in /diagnostics while the latent itself still goes
out: telemetry never costs a latent, and never fails silently."""
import rclpy
from rclpy.parameter import Parameter

from ros_helpers import camera_frames, header, poison_mu, wait_for
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


def test_telemetry_of_a_batch_with_a_refused_latent_keeps_each_frame_its_own_window():
    """Two cameras in one batch, the first camera's latent implausible (refused): the second camera's telemetry is
    published with its own frame's window and header, not the refused row's."""
    import time

    import numpy as np

    from sage_ros.ros.encoder_node import SUCCESS, EncoderNode
    from sage_ros.ros.encoding import Pending
    from sage_ros.runtime import telemetry as T

    context = rclpy.Context()
    rclpy.init(context=context)
    node = EncoderNode("tinyvae", context=context, parameter_overrides=[
        Parameter("bundle", value="tinyvae_l8_fp32"), Parameter("backend", value="onnxruntime"),
        Parameter("device", value="cpu"), Parameter("crop_mode", value="center"),
        Parameter("image_topics", value=["a/image", "b/image"])])
    try:
        assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS
        poison_mu(node.backend, 0, 0, np.nan)
        sent = {index: [] for index in range(2)}
        for index, camera in enumerate(node.cameras):
            camera.telemetry_publisher.publish = sent[index].append
        frame = camera_frames(1)[0]
        wide, tall = frame[:300, :], frame[:, :400]  # different shapes: different centre windows
        with node._model_lock:
            node.process([(0, Pending(numpy_to_image(wide, "rgb8", header=header(20, "a")), time.monotonic())),
                          (1, Pending(numpy_to_image(tall, "rgb8", header=header(21, "b")), time.monotonic()))])
        assert sent[0] == [] and len(sent[1]) == 1
        values = T.unpack(np.frombuffer(bytes(sent[1][0].data), np.float32), T.bundle_fields(node.bundle))
        height, width = tall.shape[:2]
        side = min(height, width)
        assert sent[1][0].header.frame_id == "b"
        assert (values["crop_x"], values["crop_y"], values["crop_w"]) == ((width - side) // 2, (height - side) // 2,
                                                                        side)
        assert node.stats.snapshot().counts["published"] == 1
    finally:
        node.on_shutdown(None)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
