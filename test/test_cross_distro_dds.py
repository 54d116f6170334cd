"""Cross-distro DDS: a tinyvae_encoder running on ROS 2 Jazzy's own rclpy + Fast DDS 2.14 (the Jazzy lane's venv,
Python 3.12) and a subscriber here on Kilted (Python 3.11, Fast DDS 3.x) on one ROS domain: the Kilted side gets
the latched `latent/info` as a late joiner and latents equal to an offline encoding, read and decoded with the
consumer API (sage_ros/runtime/consumer.py); both ends see the same type hash and compatible QoS. And back: a
Kilted encoder's info and latents reach a Jazzy latent_decoder started late, whose reconstructions equal a decode here.

Robots often run an older distro than the operator's machine (Jazzy on JetPack 7, Kilted on a laptop). Run by
`make test-distros` (scripts/ci/test_distros.sh), which sets SAGE_ROS_JAZZY_PYTHON to .venv-jazzy's python;
skipped with that reason elsewhere.
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String

from ros_helpers import NodeProcess, TestGraph, camera_frames, header, stamp_of, wait_for
from sage_ros.ros.info import info_qos
from sage_ros.ros.params import DEFAULT_BUNDLES
from sage_ros.ros.qos import output_qos
from sage_ros.runtime.backends import make_backend
from sage_ros.runtime.consumer import LatentDecoder, LatentInfo, latent_from_message
from sage_ros.runtime.image_codec import numpy_to_image
from sage_ros.runtime.preprocess import Preprocessor

JAZZY_PYTHON = os.environ.get("SAGE_ROS_JAZZY_PYTHON")
pytestmark = pytest.mark.skipif(not JAZZY_PYTHON, reason="needs a ROS 2 Jazzy venv: `make test-distros` sets "
                                                         "SAGE_ROS_JAZZY_PYTHON to .venv-jazzy/bin/python")
NS = "/cross_distro"


def without_this_venvs_ros_libraries(environ) -> dict:
    """The environment for another venv's ROS wheels. The wheels' bootstrapper (ros_wheels_bootstrapper.pth)
    re-executes Python once with LD_LIBRARY_PATH pointing into its venv and marks that done in
    _ROS_WHEELS_BOOTSTRAP_COMPLETE; a child inheriting both from this (Kilted) process skips its own bootstrap and
    fails to load its libraries (libfastrtps.so.2.14: not found) or loads Kilted's."""
    env = {k: v for k, v in environ.items() if k != "_ROS_WHEELS_BOOTSTRAP_COMPLETE"}
    paths = [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p and not p.startswith(sys.prefix)]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(paths)
    return env


def jazzy_rclpy_version() -> str:
    out = subprocess.run([JAZZY_PYTHON, "-c", "import importlib.metadata as m, rclpy; "
                                              "print(m.version('ros-jazzy-rclpy'), m.version('ros-fastrtps'))"],
                         capture_output=True, text=True, timeout=60, env=without_this_venvs_ros_libraries(os.environ))
    assert out.returncode == 0, f"{JAZZY_PYTHON} has no Jazzy rclpy:\n{out.stderr}"
    return out.stdout.strip()


def jazzy_node(executable: str, ros_args: list[str], log_path: Path) -> NodeProcess:
    """One of the Jazzy venv's console scripts in its own process (its own ROS libraries, this ROS domain)."""
    with pytest.MonkeyPatch.context() as patch:  # NodeProcess hands os.environ to the child
        patch.delenv("_ROS_WHEELS_BOOTSTRAP_COMPLETE", raising=False)
        patch.setenv("LD_LIBRARY_PATH", without_this_venvs_ros_libraries(os.environ)["LD_LIBRARY_PATH"])
        return NodeProcess(str(Path(JAZZY_PYTHON).parent / executable), ros_args, log_path)


@pytest.fixture(scope="module")
def jazzy_encoder(tmp_path_factory):
    rclpy_version, fastdds_version = jazzy_rclpy_version().split()
    print(f"Jazzy side: ros-jazzy-rclpy {rclpy_version}, Fast DDS {fastdds_version}")
    encoder = jazzy_node("tinyvae_encoder", ["-r", f"__ns:={NS}", "-p", "backend:=onnxruntime", "-p", "device:=cpu",
                                             "-p", "qos_reliability:=reliable"],
                         tmp_path_factory.mktemp("xdistro") / "encoder.log")
    try:
        encoder.wait_log("backend warm", timeout=60)
        yield encoder
    finally:
        encoder.stop()


def test_kilted_consumer_reads_a_jazzy_encoders_info_and_latents(jazzy_encoder):
    graph = TestGraph("cross_distro_peer")
    try:
        time.sleep(1.0)  # the info was published at activation, before this subscriber existed: latching must carry it
        infos = graph.collect(String, f"{NS}/latent/info", info_qos())
        latents = graph.collect(Image, f"{NS}/latent", output_qos())
        wait_for(lambda: infos, 30, what="the latched latent/info from the Jazzy encoder")
        info = LatentInfo.parse(infos[0].data)
        assert info.model == DEFAULT_BUNDLES["tinyvae"]

        camera = graph.node.create_publisher(Image, f"{NS}/image", QoSProfile(
            depth=10, reliability=ReliabilityPolicy.RELIABLE))
        wait_for(lambda: camera.get_subscription_count() >= 1, 30, what="the Jazzy encoder subscribed to image")
        wait_for(latents.matched, 30, what="the Jazzy latent publisher matched")
        frames = camera_frames(3)
        sent = {}
        for sec in range(10, 40):
            if len(latents) >= 3:
                break
            frame = frames[sec % 3]
            sent[(sec, 1000 * sec)] = frame
            camera.publish(numpy_to_image(frame, "rgb8", header=header(sec)))
            time.sleep(0.3)
        wait_for(lambda: len(latents) >= 3, 30, what="3 latents from the Jazzy encoder")

        decoder = LatentDecoder(info)  # the bundle found by the info's checksums, as an operator machine does
        preprocess = Preprocessor.from_bundle(decoder.bundle)
        with make_backend(decoder.bundle, "onnxruntime") as backend:
            for msg in list(latents)[:3]:
                latent = latent_from_message(msg, info)
                expected = backend.encode(preprocess([sent[stamp_of(msg)]]))["mu"][0]
                np.testing.assert_allclose(latent.mu, expected, rtol=0, atol=1e-5)
                assert decoder.decode(latent).shape == (*decoder.bundle.input_size, 3)
    finally:
        graph.close()


def test_both_distros_agree_on_type_hash_and_qos(jazzy_encoder):
    """What Kilted's graph reports about the Jazzy endpoints: the same RIHS01 type hash as Kilted's own
    sensor_msgs/Image and std_msgs/String, and the QoS the encoder declares (reliable latents, latched info)."""
    graph = TestGraph("cross_distro_graph")
    try:
        def endpoints(topic):
            return [e for e in graph.node.get_publishers_info_by_topic(topic) if e.node_name == "tinyvae_encoder"]
        latent = wait_for(lambda: endpoints(f"{NS}/latent"), 30, what="the Jazzy latent publisher in the graph")[0]
        info = wait_for(lambda: endpoints(f"{NS}/latent/info"), 30, what="the Jazzy info publisher")[0]
        own = {}
        pub = graph.node.create_publisher(Image, f"{NS}/kilted_image", 1)
        pub_info = graph.node.create_publisher(String, f"{NS}/kilted_info", 1)
        own["image"] = wait_for(lambda: graph.node.get_publishers_info_by_topic(f"{NS}/kilted_image"), 10)[0]
        own["string"] = wait_for(lambda: graph.node.get_publishers_info_by_topic(f"{NS}/kilted_info"), 10)[0]
        assert str(latent.topic_type_hash).startswith("RIHS01_")
        assert str(latent.topic_type_hash) == str(own["image"].topic_type_hash), (latent.topic_type_hash,
                                                                                   own["image"].topic_type_hash)
        assert str(info.topic_type_hash) == str(own["string"].topic_type_hash)
        assert latent.qos_profile.reliability == ReliabilityPolicy.RELIABLE
        assert info.qos_profile.durability == info_qos().durability
        pub.destroy()
        pub_info.destroy()
    finally:
        graph.close()


def test_a_jazzy_latent_decoder_started_late_decodes_a_kilted_encoders_latents(tmp_path):
    ns = f"{NS}_back"
    graph = TestGraph("cross_distro_back_peer")
    encoder = NodeProcess("tinyvae_encoder", ["-r", f"__ns:={ns}", "-p", "backend:=onnxruntime", "-p", "device:=cpu",
                                              "-p", "qos_reliability:=reliable"], tmp_path / "kilted_encoder.log")
    decoder = None
    try:
        infos = graph.collect(String, f"{ns}/latent/info", info_qos())
        latents = graph.collect(Image, f"{ns}/latent", output_qos())
        reconstructions = graph.collect(Image, f"{ns}/reconstruction", output_qos())
        encoder.wait_log("backend warm", timeout=60)
        wait_for(lambda: infos, 30, what="the Kilted encoder's info")
        # started after the info was published: only latching (transient local) across the distros gives it the model
        decoder = jazzy_node("latent_decoder", ["-r", f"__ns:={ns}", "-p", "latent_topics:=[latent]",
                                                "-p", "backend:=onnxruntime", "-p", "device:=cpu",
                                                "-p", "qos_reliability:=reliable"], tmp_path / "jazzy_decoder.log")
        decoder.wait_log("decoding", timeout=60)
        camera = graph.node.create_publisher(Image, f"{ns}/image", QoSProfile(
            depth=10, reliability=ReliabilityPolicy.RELIABLE))
        wait_for(lambda: camera.get_subscription_count() >= 1, 30, what="the Kilted encoder subscribed to image")
        wait_for(reconstructions.matched, 30, what="the Jazzy decoder's reconstruction publisher matched")
        frames = camera_frames(2)
        for sec in range(10, 40):
            if len(reconstructions) >= 2:
                break
            camera.publish(numpy_to_image(frames[sec % 2], "rgb8", header=header(sec)))
            time.sleep(0.3)
        wait_for(lambda: len(reconstructions) >= 2, 30, what=f"reconstructions from the Jazzy decoder:\n{decoder.log()}")

        info = LatentInfo.parse(infos[0].data)
        by_stamp = {stamp_of(msg): msg for msg in list(latents)}
        local = LatentDecoder(info)
        for recon in list(reconstructions)[:2]:
            expected = local.decode(latent_from_message(by_stamp[stamp_of(recon)], info))
            got = np.frombuffer(bytes(recon.data), np.uint8).reshape(recon.height, recon.width, 3)
            assert recon.encoding == "rgb8"
            np.testing.assert_array_equal(got, expected.reshape(got.shape))
    finally:
        if decoder is not None:
            decoder.stop()
        encoder.stop()
        graph.close()
