"""Untrusted input never crashes a reader: an <output>/info, a bundle.json in model_dirs and latent messages are
parsed with limits and refused with a reason (InfoError / BundleError / InfoMismatch), fuzzed with hypothesis.
Old code: `"[" * 200000 + "]" * 200000` as info -> RecursionError in LatentInfo.parse (latent_decoder exit 1);
a bundle.json whose encoder.file is a list -> TypeError (unhashable) in find_bundle (exit 1)."""
import json
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ros_helpers import export_test_bundle
from sage_ros.runtime.bundle import BundleError, load_bundle
from sage_ros.runtime.consumer import BundleNotFound, InfoMismatch, find_bundle, latent_from_message
from sage_ros.runtime.image_codec import ImageFields
from sage_ros.runtime.latent_info import InfoError, LatentInfo, info_json, model_info
from sage_ros.runtime.safe_json import JSONLimitError, loads_limited

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_bundle(export_test_bundle("TinyVAE", tmp_path_factory.mktemp("models") / "tiny"))


def test_deeply_nested_info_is_refused_not_a_recursion_error():
    with pytest.raises(InfoError, match="more than the 65536 allowed"):
        LatentInfo.parse("[" * 200000 + "]" * 200000)
    with pytest.raises(InfoError, match="nests deeper"):  # small enough, too deep
        LatentInfo.parse("[" * 20000 + "]" * 20000)
    with pytest.raises(InfoError, match="more than"):
        LatentInfo.parse('{"a": "' + "x" * 100000 + '"}')
    with pytest.raises(InfoError, match="not JSON"):
        LatentInfo.parse(b"\xff\xfe")
    assert loads_limited('{"a": "[[[[[["}', max_bytes=100, max_depth=1) == {"a": "[[[[[["}  # strings don't nest


def test_latent_decoder_node_keeps_running_on_hostile_infos():
    from collections import Counter

    import rclpy
    from std_msgs.msg import String

    from sage_ros.ros.decoder_node import LatentDecoderNode, stream_level

    context = rclpy.Context()
    rclpy.init(context=context)
    node = LatentDecoderNode(context=context)
    try:
        stream = node.streams[0]
        for text in ("[" * 200000 + "]" * 200000, "{" * 50, "null", json.dumps({"kind": ["x"] * 10})):
            node._on_info(stream, String(data=text))
            assert stream.problem.startswith("unusable info"), stream.problem
            assert stream_level(stream, Counter())[0] == 2  # ERROR in /diagnostics with the reason
            stream.problem = ""
    finally:
        node.close()
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def test_bundle_json_with_a_list_as_encoder_file_is_skipped_with_the_reason(tiny, tmp_path):
    models = tmp_path / "models"
    bad = models / "bad"
    shutil.copytree(tiny.path, bad)
    meta = json.loads((bad / "bundle.json").read_text())
    meta["encoder"]["file"] = ["encoder.onnx"]
    (bad / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="encoder.file must be a file name"):
        load_bundle(bad)
    info = LatentInfo.parse(info_json(model_info(tiny)))
    with pytest.raises(BundleNotFound, match="skipped 1 invalid bundle.json.*encoder.file"):
        find_bundle(info, [models], allow_name=True)
    shutil.copytree(tiny.path, models / "good")  # a good bundle beside it is still found
    assert find_bundle(info, [models])[1] == "checksum"
    (bad / "bundle.json").write_text("[" * 100000)
    with pytest.raises(BundleError, match="nests deeper"):
        load_bundle(bad)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=12), children, max_size=6), max_leaves=30)


@FUZZ
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300), json_values.map(json.dumps)))
def test_fuzz_info_parse_raises_only_info_error(text):
    try:
        info = LatentInfo.parse(text)
    except InfoError:
        return
    info.summary(), info.identity, info.input_range, info.data_shape  # a parsed info is fully usable


@FUZZ
@given(key=st.sampled_from(["format_version", "kind", "model", "shape", "latent_dim", "input", "fingerprint",
                            "identity_rows", "encoder_sha256", "encoding"]), value=json_values)
def test_fuzz_info_with_one_key_replaced(tiny, key, value):
    raw = model_info(tiny)
    raw[key] = value
    try:
        info = LatentInfo.parse(json.dumps(raw))
    except InfoError:
        return
    info.summary(), info.identity, info.input_range, info.data_shape


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["name", "architecture", "precision", "input", "latent_shape", "files", "encoder",
                            "decoder", "torch_weights", "metrics", "created_by", "num_codes"]), value=json_values)
def test_fuzz_bundle_json_raises_only_bundle_error(tiny, tmp_path_factory, key, value):
    directory = tmp_path_factory.mktemp("fuzz") / "b"
    shutil.copytree(tiny.path, directory)
    meta = json.loads((directory / "bundle.json").read_text())
    meta[key] = value
    (directory / "bundle.json").write_text(json.dumps(meta))
    try:
        load_bundle(directory)
    except BundleError:
        pass
    info = LatentInfo.parse(info_json(model_info(tiny)))
    try:
        find_bundle(info, [directory.parent])
    except BundleNotFound:
        pass


@FUZZ
@given(encoding=st.sampled_from(["32FC1", "mono8", "rgb8", "", "32FC1\x00"]), height=st.integers(-2, 6),
       width=st.integers(-2, 70), step=st.integers(-4, 400), bigendian=st.integers(0, 2),
       data=st.binary(max_size=2400))
def test_fuzz_latent_from_message_raises_only_info_mismatch(tiny, encoding, height, width, step, bigendian, data):
    info = LatentInfo.parse(info_json(model_info(tiny)))
    msg = ImageFields(height=height, width=width, encoding=encoding, is_bigendian=bigendian, step=step, data=data)
    try:
        latent = latent_from_message(msg, info)
    except InfoMismatch:
        return
    assert latent.mu.shape == (8,) and np.isfinite(latent.mu).all()


def test_limits_are_enforced_before_parsing():
    with pytest.raises(JSONLimitError):
        loads_limited("1" * 11, max_bytes=10, max_depth=5)
    with pytest.raises(JSONLimitError):
        loads_limited("[[[]]]", max_bytes=100, max_depth=2)
    assert loads_limited("[[]]", max_bytes=100, max_depth=2) == [[]]


def test_encoder_refuses_a_bad_bundle_change_with_the_reason_in_diagnostics(tiny, tmp_path):
    import rclpy
    from rclpy.parameter import Parameter

    from sage_ros.ros.encoder_node import SUCCESS, EncoderNode

    bad = tmp_path / "bad"
    shutil.copytree(tiny.path, bad)
    meta = json.loads((bad / "bundle.json").read_text())
    meta["encoder"]["file"] = ["encoder.onnx"]
    (bad / "bundle.json").write_text(json.dumps(meta))
    context = rclpy.Context()
    rclpy.init(context=context)
    node = EncoderNode("tinyvae", context=context, parameter_overrides=[
        Parameter("bundle", value=str(tiny.path)), Parameter("backend", value="onnxruntime"),
        Parameter("device", value="cpu")])
    try:
        assert node.trigger_configure() == SUCCESS
        result = node.set_parameters([Parameter("bundle", value=str(bad))])[0]
        assert not result.successful and "encoder.file must be a file name" in result.reason
        assert "encoder.file" in node.stats.last_error and node.stats.snapshot().new["errors"] == 1
        assert node.bundle.path == tiny.path  # the old bundle keeps running
    finally:
        node.on_shutdown(None)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
