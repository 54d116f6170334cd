"""Outputs go beside the input as the graph resolves it (README: `-r image:=/camera/image_raw` -> /camera/latent,
/camera/latent/info, /camera/reconstruction; old code published /latent), an explicit output remap still wins, and a
subscribed topic without a publisher is named after a few seconds with similar topics of the same type."""
from types import SimpleNamespace

import pytest
import rclpy
from rclpy.parameter import Parameter

from ros_helpers import export_test_bundle
from sage_ros.ros import graph_check
from sage_ros.ros.graph_check import PublisherCheck, close_matches


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"tiny": export_test_bundle("TinyVAE", root / "tiny"),
            "puzzle": export_test_bundle("VisionPuzzleVAE", root / "puzzle")}


@pytest.fixture
def context(rclpy_context):
    return rclpy_context


def configured(context, preset, bundle, remaps, **params):
    from sage_ros.ros.encoder_node import SUCCESS, EncoderNode

    overrides = [Parameter("bundle", value=str(bundle)), Parameter("backend", value="onnxruntime"),
                 Parameter("device", value="cpu")] + [Parameter(k, value=v) for k, v in params.items()]
    args = ["--ros-args"] + [item for remap in remaps for item in ("-r", remap)]
    node = EncoderNode(preset, context=context, cli_args=args, parameter_overrides=overrides)
    assert node.trigger_configure() == SUCCESS
    return node


def resolved(node):
    camera = node.cameras[0]
    return (node.resolve_topic_name(camera.input_topic), node.resolve_topic_name(camera.output_topic),
            camera.info_publisher.topic_name, node.resolve_topic_name(camera.reconstruction_topic))


@pytest.mark.parametrize("remaps, expected", [
    (["image:=/camera/image_raw"], ("/camera/image_raw", "/camera/latent", "/camera/latent/info",
                                    "/camera/reconstruction")),
    (["image:=camera/image_raw"], ("/camera/image_raw", "/camera/latent", "/camera/latent/info",
                                   "/camera/reconstruction")),
    ([], ("/image", "/latent", "/latent/info", "/reconstruction")),
    (["__ns:=/robot"], ("/robot/image", "/robot/latent", "/robot/latent/info", "/robot/reconstruction")),
    (["image:=/camera/image_raw", "latent:=/x"], ("/camera/image_raw", "/x", "/x/info", "/camera/reconstruction")),
])
def test_outputs_beside_the_resolved_input(context, bundles, remaps, expected):
    node = configured(context, "tinyvae", bundles["tiny"], remaps)
    try:
        assert resolved(node) == expected
        assert node.diagnostics_info()["image_topics"] == expected[0]
    finally:
        node.on_shutdown(None)
        node.destroy_node()


def test_compressed_puzzle_readme_remap(context, bundles):
    node = configured(context, "puzzle", bundles["puzzle"], ["image/compressed:=/camera/image_raw/compressed"],
                      input_transport="compressed")
    try:
        assert resolved(node) == ("/camera/image_raw/compressed", "/camera/puzzle", "/camera/puzzle/info",
                                  "/camera/puzzle_reconstruction")
    finally:
        node.on_shutdown(None)
        node.destroy_node()


def test_decoder_reconstruction_beside_the_resolved_latent_topic(context):
    from sage_ros.ros.decoder_node import LatentDecoderNode, Stream

    node = LatentDecoderNode(context=context, cli_args=["--ros-args", "-r", "latent:=/camera/latent"])
    try:
        stream = node.streams[0]
        stream.info = SimpleNamespace(is_puzzle=False)
        node._ensure_publisher(stream)
        assert node.resolve_topic_name(stream.output_topic) == "/camera/reconstruction"
    finally:
        node.close()
        node.destroy_node()


GRAPH = [("/camera/image_raw", ["sensor_msgs/msg/Image"]), ("/camera/image_raw/compressed",
                                                              ["sensor_msgs/msg/CompressedImage"]),
         ("/camera/camera_info", ["sensor_msgs/msg/CameraInfo"]), ("/rosout", ["rcl_interfaces/msg/Log"])]


def test_close_matches_are_of_the_same_type():
    assert close_matches("/camera/imag_raw", "sensor_msgs/msg/Image", GRAPH) == ["/camera/image_raw"]
    assert close_matches("/camera/imag_raw", "sensor_msgs/msg/CompressedImage", GRAPH) == [
        "/camera/image_raw/compressed"]
    assert close_matches("/lidar/points", "sensor_msgs/msg/Image", GRAPH) == []


def test_publisher_check_warns_after_the_grace_period_naming_topic_and_matches():
    now = {"t": 0.0}
    warnings = []
    node = SimpleNamespace(count_publishers=lambda topic: 0, get_topic_names_and_types=lambda: GRAPH,
                           get_logger=lambda: SimpleNamespace(warning=warnings.append))
    check = PublisherCheck(node, [("/camera/imag_raw", "sensor_msgs/msg/Image")], clock=lambda: now["t"])
    assert check.poll() == {} and warnings == []  # within the grace period: nothing yet
    now["t"] = graph_check.NO_PUBLISHER_GRACE_S + 0.1
    assert check.poll() == {"/camera/imag_raw": ["/camera/image_raw"]}
    assert len(warnings) == 1 and "'/camera/imag_raw'" in warnings[0] and "/camera/image_raw" in warnings[0]
    check.poll()
    assert len(warnings) == 1  # repeated only every REPEAT_S
    node.count_publishers = lambda topic: 1
    assert check.poll() == {}


def test_encoder_diagnostics_name_the_missing_publisher(context, bundles, monkeypatch):
    from sage_ros.ros.diagnostics import level_and_message

    node = configured(context, "tinyvae", bundles["tiny"], ["image:=/camera/imag_raw"])
    try:
        from sage_ros.ros.encoder_node import SUCCESS
        assert node.trigger_activate() == SUCCESS
        monkeypatch.setattr(graph_check, "NO_PUBLISHER_GRACE_S", 0.0)
        other = rclpy.create_node("camera_driver", context=context)
        from sensor_msgs.msg import Image
        other.create_publisher(Image, "/camera/image_raw", 1)
        assert node._input_check.poll()["/camera/imag_raw"] == ["/camera/image_raw"]
        level, message = level_and_message(node.stats.snapshot(), True, "no publisher on /camera/imag_raw "
                                           "(similar: /camera/image_raw)")
        assert level == b"\x01" and "/camera/image_raw" in message
        other.destroy_node()
    finally:
        node.on_shutdown(None)
        node.destroy_node()
