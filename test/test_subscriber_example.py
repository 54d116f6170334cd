"""The downstream node in README "Subscribing", run as it is printed there, against a real encoder (its shipped
default bundle) over DDS: it gets the latched info, pairs each latent with its camera frame by stamp, decodes it."""
import os
import re
import subprocess
import sys
import time

import cv2
from sensor_msgs.msg import Image

from ros_helpers import REPO, NodeProcess, TestGraph, camera_frames, header, stamp_of, wait_for
from sage_ros.ros.params import DEFAULT_BUNDLES
from sage_ros.runtime.image_codec import numpy_to_image
from sage_ros.runtime.messages import image_to_output

NS = "/example_test"


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Subscribing"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    lines = [line for line in code.splitlines() if line.strip()]
    assert 20 <= len(lines) <= 30, f"the example has {len(lines)} lines"
    return code


def test_readme_subscriber_example_runs(tmp_path):
    script = tmp_path / "downstream.py"
    script.write_text(readme_example())
    graph = TestGraph("example_test_peer")
    encoder = NodeProcess("tinyvae_encoder", ["-r", f"__ns:={NS}", "-r", "image:=camera/image_raw",
                                              "-p", "backend:=onnxruntime", "-p", "device:=cpu",
                                              "-p", "qos_reliability:=reliable"], tmp_path / "encoder.log")
    log = open(tmp_path / "example.log", "wb")
    example = subprocess.Popen([sys.executable, str(script), "--ros-args", "-r", f"__ns:={NS}"], stdout=log,
                               stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1",
                                                                  RCUTILS_LOGGING_BUFFERED_STREAM="0"))
    try:
        latents = graph.collect(Image, f"{NS}/camera/latent")
        camera = graph.node.create_publisher(Image, f"{NS}/camera/image_raw", 10)
        encoder.wait_log("backend warm")
        wait_for(lambda: camera.get_subscription_count() >= 2, 30, what="encoder and example subscribed")
        frames = [cv2.resize(f, (160, 120), interpolation=cv2.INTER_AREA) for f in camera_frames(3)]

        def example_lines():
            return re.findall(r"\]: (\S+): frame \((\d+), (\d+), 3\), mu\[0\] (\S+), decoded \((\d+), (\d+), 3\)",
                              (tmp_path / "example.log").read_text(errors="replace"))
        sec = 10
        while len(example_lines()) < 2 and sec < 40:  # until two frames were paired and decoded
            camera.publish(numpy_to_image(frames[sec % 3], "rgb8", header=header(sec)))
            sec += 1
            time.sleep(0.5)
        lines = example_lines()
        assert len(lines) >= 2, (tmp_path / "example.log").read_text()
        received = {f"{image_to_output(m)['mu'][0]:.4f}" for m in list(latents)}
        for model, height, width, mu, out_h, out_w in lines:
            assert model == DEFAULT_BUNDLES["tinyvae"] and (height, width) == ("120", "160")
            assert (out_h, out_w) == ("64", "64")
            assert mu in received, (mu, received)  # the mu of a latent the encoder really published
        assert example.poll() is None, "the example died"
    finally:
        example.terminate()
        example.wait(timeout=10)
        log.close()
        encoder.stop()
        graph.close()
