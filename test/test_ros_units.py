"""The encoder node's parts without a ROS graph: parameters, latest-frame slots, frame -> message functions,
diagnostics, bundle resolution, lifecycle transitions in-process, and the torch-free import path."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ros_helpers import camera_frames, export_test_bundle, header
from sage_ros.ros import params as P
from sage_ros.ros.diagnostics import EncoderStats, diagnostic_array, level_and_message, status_values
from sage_ros.ros.encoding import (ImageConversionError, LatestFrameSlots, decode_min_size, encode_frames,
                                   frame_from_message, output_messages, reconstruction_messages)
from sage_ros.runtime.backends import make_backend
from sage_ros.runtime.bundle import BundleError, load_bundle
from sage_ros.runtime.image_codec import encode_compressed, numpy_to_image
from sage_ros.runtime.messages import image_to_output
from sage_ros.runtime.preprocess import Preprocessor


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    return export_test_bundle("TinyVAE", tmp_path_factory.mktemp("bundles") / "tiny")


@pytest.fixture(scope="module")
def frames():
    return camera_frames(3)


# --- parameters ---------------------------------------------------------------------------------------------

def test_every_default_is_valid_and_described():
    for spec in P.PARAMS:
        assert P.validate(spec.name, spec.default) is None, spec.name
        assert len(spec.description) > 20, spec.name


@pytest.mark.parametrize("name, value, words", [
    ("max_rate", -1.0, "max_rate must be in"),
    ("max_rate", float("nan"), "max_rate must be in"),
    ("max_rate", -1, "max_rate must be in"),             # an integer is a double: it reaches the range check
    ("max_rate", True, "type float"),
    ("qos_depth", 0, "qos_depth must be in"),
    ("qos_depth", 1.0, "type int"),
    ("crop_mode", "zoom", "crop_mode must be one of"),
    ("backend", "openvino", "backend must be one of"),
    ("device", "gpu0", "device must be"),
    ("input_transport", "theora", "input_transport must be one of"),
    ("qos_reliability", "reliable_ish", "qos_reliability must be one of"),
    ("publish_reconstruction", 1, "type bool"),
    ("image_topics", [], "at least one"),
    ("image_topics", ["9cam/image"], "invalid topic names"),
    ("image_topics", ["front/image_raw", "front/image_rect"], "same outputs"),
    ("no_such_parameter", 1, "unknown parameter"),
])
def test_invalid_values_are_rejected_with_a_reason(name, value, words):
    reason = P.validate(name, value)
    assert reason is not None and words in reason


@pytest.mark.parametrize("topic, namespace", [
    ("image", ""), ("/camera/image_raw", "/camera/"), ("front/image_raw", "front/"), ("/a/b/image", "/a/b/")])
def test_outputs_live_beside_their_input(topic, namespace):
    assert P.output_namespace(topic) == namespace


def test_node_declares_every_parameter_with_its_descriptor():
    import rclpy
    from rclpy.parameter import Parameter

    from sage_ros.ros.encoder_node import EncoderNode

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = EncoderNode("tinyvae", context=context)
        for spec in P.PARAMS:
            descriptor = node.describe_parameter(spec.name)
            assert descriptor.read_only == spec.read_only, spec.name
            assert node.get_parameter(spec.name).value == spec.default
            if spec.float_range:
                assert (descriptor.floating_point_range[0].from_value,
                        descriptor.floating_point_range[0].to_value) == spec.float_range
            if spec.int_range:
                assert (descriptor.integer_range[0].from_value, descriptor.integer_range[0].to_value) == spec.int_range
        # on change: invalid rejected with the validator's reason, read-only rejected, live ones applied
        result = node.set_parameters([Parameter("crop_mode", value="zoom")])[0]
        assert not result.successful and "crop_mode must be one of" in result.reason
        assert not node.set_parameters([Parameter("backend", value="torch")])[0].successful  # read-only
        # bundle is live: unconfigured, any value is taken (configure loads it); configured, it must load
        assert node.set_parameters([Parameter("bundle", value="/elsewhere")])[0].successful
        assert node.set_parameters([Parameter("max_rate", value=7.5)])[0].successful
        assert node._live["max_rate"] == 7.5
        node.destroy_node()
        # at start: an invalid override fails construction (main() exits 2 with the reason)
        with pytest.raises(Exception, match="crop_mode must be one of"):
            EncoderNode("tinyvae", context=context, parameter_overrides=[Parameter("crop_mode", value="zoom")])
    finally:
        rclpy.try_shutdown(context=context)


def test_qos_defaults_are_sensor_data_in_and_reliable_out():
    from rclpy.qos import HistoryPolicy, ReliabilityPolicy

    from sage_ros.ros.qos import input_qos, output_qos

    default_in = input_qos(P.SPECS["qos_reliability"].default, P.SPECS["qos_depth"].default)
    assert (default_in.reliability, default_in.history, default_in.depth) == (
        ReliabilityPolicy.BEST_EFFORT, HistoryPolicy.KEEP_LAST, 5)  # rclpy sensor-data depth (issue #11)
    assert input_qos("reliable", 5).reliability == ReliabilityPolicy.RELIABLE
    assert output_qos().reliability == ReliabilityPolicy.RELIABLE


# --- latest frame wins ----------------------------------------------------------------------------------------

def test_slots_keep_only_the_newest_frame_per_camera_and_count_drops():
    slots = LatestFrameSlots(2)
    assert slots.put(0, "a0") is False
    assert slots.put(0, "a1") is True       # a0 never encoded: a drop
    assert slots.put(1, "b0") is False
    assert slots.take(timeout=0) == [(0, "a1"), (1, "b0")]  # pending together -> one batch
    assert slots.dropped == 1
    assert slots.take(timeout=0.01) == []
    slots.put(1, "b1")
    assert slots.clear() == 1 and slots.take(timeout=0) == []


# --- frame -> message -----------------------------------------------------------------------------------------

def test_messages_equal_offline_encoding(tiny_bundle, frames):
    bundle = load_bundle(tiny_bundle)
    backend = make_backend(bundle, "onnxruntime", "cpu")
    msgs = [numpy_to_image(frame, "rgb8", header=header(i)) for i, frame in enumerate(frames)]
    decoded = [frame_from_message(m, compressed=False) for m in msgs]
    outputs = encode_frames(backend, Preprocessor.from_bundle(bundle, "center"), decoded)
    messages = output_messages(outputs, [m.header for m in msgs])
    reference = backend.encode(Preprocessor.from_bundle(bundle, "center")(list(frames)))
    for i, message in enumerate(messages):
        assert (message.encoding, message.height, message.width) == ("32FC1", 3, bundle.latent_shape[0])  # + identity row
        assert message.header.stamp.sec == i and message.header.frame_id == "camera_optical_frame"
        got = image_to_output(message)
        np.testing.assert_allclose(got["mu"], reference["mu"][i], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(got["logvar"], reference["logvar"][i], rtol=1e-6, atol=1e-6)
    recon = reconstruction_messages(backend, outputs, [m.header for m in msgs])
    assert (recon[0].encoding, recon[0].height, recon[0].width) == ("rgb8", 64, 64)


def test_bgr_and_compressed_frames_decode_to_the_same_rgb(frames):
    bgr = numpy_to_image(np.ascontiguousarray(frames[0][..., ::-1]), "bgr8")
    np.testing.assert_array_equal(frame_from_message(bgr, compressed=False), frames[0])

    class Compressed:
        format = "jpeg"
        data = encode_compressed(frames[0], quality=95)
    full = frame_from_message(Compressed, compressed=True)
    reduced = frame_from_message(Compressed, compressed=True, min_size=64)
    assert full.shape == frames[0].shape
    assert 64 <= min(reduced.shape[:2]) < min(full.shape[:2])  # libjpeg's reduced-resolution decode
    assert decode_min_size(type("B", (), {"input_size": (64, 64)}), "motion") is None


def _malformed_messages():
    good = numpy_to_image(np.zeros((8, 8, 3), np.uint8), "rgb8")
    short = numpy_to_image(np.zeros((8, 8, 3), np.uint8), "rgb8")
    short.data = short.data[:-5]
    unknown = numpy_to_image(np.zeros((8, 8, 3), np.uint8), "rgb8")
    unknown.encoding = "weird8"
    empty = numpy_to_image(np.zeros((8, 8, 3), np.uint8), "rgb8")
    empty.height = 0
    nan = numpy_to_image(np.full((8, 8), np.nan, np.float32), "32FC1")
    return good, [short, unknown, empty, nan]


def test_malformed_messages_raise_one_error_type():
    good, bad = _malformed_messages()
    assert frame_from_message(good, compressed=False).shape == (8, 8, 3)
    for msg in bad:
        with pytest.raises(ImageConversionError):
            frame_from_message(msg, compressed=False)

    class NotAJpeg:
        format = "jpeg"
        data = b"\xff\xd8\xff" + b"\x00" * 50
    with pytest.raises(ImageConversionError):
        frame_from_message(NotAJpeg, compressed=True)


# --- diagnostics -----------------------------------------------------------------------------------------------

def test_stats_rates_percentiles_and_levels():
    now = [100.0]
    stats = EncoderStats(clock=lambda: now[0])
    for latency in np.linspace(0.001, 0.1, 100):
        stats.add("received")
        stats.add("published")
        stats.observe(float(latency), 0.0005)
    stats.add("dropped", 3)
    now[0] += 2.0
    snap = stats.snapshot()
    assert snap.input_rate == pytest.approx(50.0) and snap.output_rate == pytest.approx(50.0)
    assert snap.latency_ms["p50"] == pytest.approx(50.5, abs=0.6)
    assert snap.latency_ms["p99"] > snap.latency_ms["p90"] > snap.latency_ms["p50"]
    level, _ = level_and_message(snap, active=True)
    assert level == b"\x00"
    stats.error("bad frame: short data", "bad_frames")
    now[0] += 1.0
    snap = stats.snapshot()
    assert snap.new == {"received": 0, "published": 0, "dropped": 0, "lost": 0, "bad_frames": 1, "errors": 0,
                        "publish_errors": 0, "worker_restarts": 0}
    assert level_and_message(snap, active=True)[0] == b"\x01"
    stats.error("inference: boom")
    array = diagnostic_array(stats.snapshot(), name="n: encoder", hardware_id="cpu",
                             info={"backend": "onnxruntime"}, active=True, stamp=header(0).stamp)
    values = status_values(array)
    assert array.status[0].level == b"\x02" and values["errors"] == "1" and values["bad_frames"] == "1"
    assert values["dropped_frames"] == "3" and values["backend"] == "onnxruntime"
    assert level_and_message(stats.snapshot(), active=False)[1].startswith("inactive")


# --- bundles and lifecycle ----------------------------------------------------------------------------------------

def test_bundle_names_resolve_in_shipped_dirs(tmp_path, monkeypatch, tiny_bundle):
    from sage_ros.ros import cameras as encoder_node

    monkeypatch.setattr(encoder_node, "shipped_model_dirs", lambda: [tmp_path / "share", tiny_bundle.parent])
    assert encoder_node.resolve_bundle(tiny_bundle.name, "tinyvae") == tiny_bundle
    assert encoder_node.resolve_bundle(str(tiny_bundle), "tinyvae") == tiny_bundle
    with pytest.raises(BundleError, match="not found.*share"):
        encoder_node.resolve_bundle("no_such_bundle", "tinyvae")


def test_shipped_dirs_without_a_ros_install(monkeypatch):
    from sage_ros.ros import cameras as encoder_node

    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)  # a venv: no ament index at all
    assert encoder_node.shipped_model_dirs()[-1] == Path(encoder_node.__file__).resolve().parents[2] / "models"
    monkeypatch.setenv("AMENT_PREFIX_PATH", "/nonexistent")  # an ament index without sage_ros
    assert len(encoder_node.shipped_model_dirs()) == 1


def test_lifecycle_transitions_in_process(tiny_bundle, tmp_path):
    import rclpy
    from rclpy.parameter import Parameter

    from sage_ros.ros.encoder_node import FAILURE, SUCCESS, EncoderNode

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        missing = EncoderNode("tinyvae", context=context, parameter_overrides=[
            Parameter("bundle", value=str(tmp_path / "missing")), Parameter("backend", value="onnxruntime")])
        assert missing.trigger_configure() == FAILURE and missing.backend is None
        missing.destroy_node()
        node = EncoderNode("tinyvae", context=context, parameter_overrides=[
            Parameter("bundle", value=str(tiny_bundle)), Parameter("backend", value="onnxruntime"),
            Parameter("image_topics", value=["front/image", "rear/image"])])
        assert node.trigger_configure() == SUCCESS
        assert [c.output_topic for c in node.cameras] == ["/front/latent", "/rear/latent"]  # beside the resolved input
        assert node.trigger_activate() == SUCCESS and node._worker.is_alive()
        assert node.diagnostics_info()["state"] == "active"
        assert node.trigger_deactivate() == SUCCESS and node._worker is None
        assert node.trigger_cleanup() == SUCCESS and node.backend is None
        assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS  # again
        node.on_shutdown(None)
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_corrupt_bundle_fails_configure_with_the_file_named(tiny_bundle, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundle, broken)
    with open(broken / "encoder.onnx", "ab") as f:
        f.write(b"\0")
    result = subprocess.run([sys.executable, "-m", "sage_ros.ros.encoder_node", "--ros-args",
                             "-p", f"bundle:={broken}", "-p", "backend:=onnxruntime"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "cannot configure" in result.stderr and "encoder.onnx: sha256 mismatch" in result.stderr


def test_node_import_path_has_no_torch(tiny_bundle):
    """Configure, activate and encode one frame in a fresh interpreter with onnxruntime: torch never loads."""
    script = f"""
import sys, time, numpy as np, rclpy
from rclpy.parameter import Parameter
from sage_ros.ros.encoder_node import EncoderNode
from sage_ros.ros.encoding import Pending
from sage_ros.runtime.image_codec import numpy_to_image
rclpy.init()
node = EncoderNode("tinyvae", parameter_overrides=[Parameter("bundle", value={str(tiny_bundle)!r}),
                                                   Parameter("backend", value="onnxruntime")])
assert node.autostart()
node.process([(0, Pending(numpy_to_image(np.zeros((48, 64, 3), np.uint8), "rgb8"), time.monotonic()))])
assert node.stats.snapshot().counts["published"] == 1
node.on_shutdown(None)
print("torch loaded:", "torch" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "torch loaded: False" in result.stdout
