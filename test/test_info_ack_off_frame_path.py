"""A suspended <output>/info subscriber (SIGSTOP, standing in for Ctrl-Z) must not stall the cameras or the
parameter call: the acknowledgement wait runs off the frame path, bounded in total per change, and a WARN names
how many subscribers did not acknowledge (old code: every change blocked all cameras and the set call for 1 s per
camera, nothing logged)."""
import os
import signal
import subprocess
import sys
import time

import pytest
import rclpy
from rclpy.parameter import Parameter

from ros_helpers import camera_frames, export_test_bundle, header, wait_for
from sage_ros.runtime.image_codec import numpy_to_image

SUBSCRIBER = """
import sys, rclpy
from std_msgs.msg import String
from sage_ros.ros.info import info_qos
rclpy.init()
node = rclpy.create_node("stalled_info_subscriber")
for topic in sys.argv[1:]:
    node.create_subscription(String, topic, lambda msg, t=topic: print("got", t, flush=True), info_qos())
rclpy.spin(node)
"""
ACK_S = 3.0  # the test's bound (the node's is 1 s): long enough to see frames flow while the wait is pending


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    return export_test_bundle("TinyVAE", tmp_path_factory.mktemp("bundles") / "tiny")


def test_a_stopped_info_subscriber_stalls_nothing(tiny_bundle, tmp_path):
    from sage_ros.ros.encoder_node import SUCCESS, EncoderNode

    context = rclpy.Context()
    rclpy.init(context=context)
    ns = f"/ack_test_{os.getpid()}"
    node = EncoderNode("tinyvae", context=context, cli_args=["--ros-args", "-r", f"__ns:={ns}"], parameter_overrides=[
        Parameter("bundle", value=str(tiny_bundle)), Parameter("backend", value="onnxruntime"),
        Parameter("device", value="cpu"), Parameter("image_topics", value=["a/image", "b/image"])])
    script = tmp_path / "subscriber.py"
    script.write_text(SUBSCRIBER)
    log = open(tmp_path / "subscriber.log", "w")
    subscriber = subprocess.Popen([sys.executable, str(script), f"{ns}/a/latent/info", f"{ns}/b/latent/info"],
                                  stdout=log, stderr=subprocess.STDOUT)
    try:
        assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS
        wait_for(lambda: (tmp_path / "subscriber.log").read_text().count("got") >= 2, 60,
                 what="the subscriber got both latched infos")
        warnings = []
        node._acks._timeout = ACK_S
        node._acks._logger = type("L", (), {"warning": lambda self, text: warnings.append(text)})()
        subscriber.send_signal(signal.SIGSTOP)

        # a crop_mode change: its info goes out with the next batch, whose latents must not wait for the acks
        before = node._acks.changes
        assert node.set_parameters([Parameter("crop_mode", value="center")])[0].successful
        frames = camera_frames(2)
        node._on_frame(0, numpy_to_image(frames[0], "rgb8", header=header(5)))
        wait_for(lambda: node._acks.changes > before, 30, what="the info published")
        waiting = node._acks._threads[-1]
        started = time.monotonic()
        wait_for(lambda: node.stats._counts["published"] >= 1, 30, what="the latent")
        assert waiting.is_alive(), "the latent went out only after the ack wait: it is on the frame path"
        node._on_frame(1, numpy_to_image(frames[1], "rgb8", header=header(6)))
        wait_for(lambda: node.stats._counts["published"] >= 2, 30, what="the other camera's latent")
        assert waiting.is_alive()
        waiting.join(60)
        # bounded in total for the change (old code: ACK_S per camera, one after the other)
        assert time.monotonic() - started < 2 * ACK_S
        assert len(warnings) == 1, warnings
        assert "did not acknowledge" in warnings[0] and "2 subscriber(s)" in warnings[0], warnings[0]
        assert f"{ns}/a/latent/info" in warnings[0] and f"{ns}/b/latent/info" in warnings[0]
        assert node._acks.timeouts == 1

        # a bundle change: the parameter call returns before the acks are in (none will come)
        count = node._acks.changes
        assert node.set_parameters([Parameter("bundle", value=str(tiny_bundle.parent / "tiny"))])[0].successful
        if node._acks.changes > count:  # the same bundle path gives the same info: no new wait then
            assert node._acks._threads[-1].is_alive()
    finally:
        subscriber.send_signal(signal.SIGCONT)
        subscriber.terminate()
        subscriber.wait(timeout=10)
        log.close()
        node.on_shutdown(None)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
