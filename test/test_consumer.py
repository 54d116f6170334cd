"""The subscriber's side without ROS: <output>/info JSON, message -> mu / log sigma^2 / codes checked against it,
bundle lookup by checksum or name, decoding bit for bit equal to a plain onnxruntime session, stamp pairing."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ros_helpers import export_test_bundle
from sage_ros.runtime.bundle import Bundle, load_bundle
from sage_ros.runtime.consumer import (BundleNotFound, InfoMismatch, Latent, LatentDecoder, StampPairer, find_bundle,
                                       latent_from_message, shipped_model_dirs)
from sage_ros.runtime.image_codec import ImageFields
from sage_ros.runtime.latent_info import InfoError, LatentInfo, info_json, model_info
from sage_ros.runtime.messages import output_to_image
from sage_ros.runtime.postprocess import decoded_to_rgb8


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A seeded TinyVAE (L=8) bundle in <models>/tiny, as an operator machine would have it installed."""
    models = tmp_path_factory.mktemp("models")
    return load_bundle(export_test_bundle("TinyVAE", models / "tiny"))


def puzzle_meta_bundle() -> Bundle:
    """A puzzle bundle's metadata only (model_info needs no files)."""
    return Bundle(Path("/nowhere"), {"name": "p", "architecture": "VisionPuzzleVAE", "precision": "int8",
                                     "input": {"height": 224, "width": 224, "range": [-1.0, 1.0]},
                                     "latent_shape": [30, 30], "num_codes": 10,
                                     "files": {"encoder.onnx": "a" * 64, "decoder.onnx": "b" * 64}})


def message(outputs, index=0, info=None):
    """A message as the encoder publishes it; with `info`, carrying that model's identity rows."""
    if info is not None:
        outputs = dict(outputs, fingerprint=np.array([info.fingerprint] * len(next(iter(outputs.values())))))
    return output_to_image(outputs, index, msg=ImageFields(data=np.empty(0, np.uint8)))


def changed(info: dict, **changes) -> dict:
    """An info with other model / checksums and the fingerprint that goes with them."""
    from sage_ros.runtime.latent_info import fingerprint

    new = dict(info, **changes)
    return dict(new, fingerprint=fingerprint(new["model"], new["encoder_sha256"], new["decoder_sha256"]))


def test_info_names_the_model_its_checksums_layout_and_input(tiny):
    info = model_info(tiny, "center")
    assert info["model"] == tiny.name and info["architecture"] == "TinyVAE" and info["precision"] == "fp32"
    assert info["encoder_sha256"] == tiny.meta["files"]["encoder.onnx"] != info["decoder_sha256"]
    assert info["decoder_sha256"] == tiny.meta["files"]["decoder.onnx"]
    assert (info["kind"], info["latent_dim"], info["shape"], info["encoding"]) == ("latent", 8, [3, 8], "32FC1")
    assert "row 0 = mu" in info["layout"] and "row 1 = log sigma^2" in info["layout"]
    assert info["input"] == {"height": 64, "width": 64, "color_order": "rgb", "range": [0.0, 1.0],
                             "crop_mode": "center"}
    assert info["format_version"] == 2 and info["identity_rows"] == 1 and len(info["fingerprint"]) == 12
    assert len(info_json(info)) < 2000  # small: one message, latched (the telemetry field list is half of it)
    puzzle = model_info(puzzle_meta_bundle())
    assert (puzzle["kind"], puzzle["grid"], puzzle["codes"], puzzle["encoding"]) == ("puzzle", [30, 30], 10, "mono8")
    assert "latent_dim" not in puzzle and "codebook" in puzzle["layout"]
    assert LatentInfo.parse(info_json(puzzle)).raw == puzzle


@pytest.mark.parametrize("change, words", [
    (lambda d: d.pop("decoder_sha256"), "lacks keys"),
    (lambda d: d.update(encoding="mono8"), "encoding"),
    (lambda d: d.update(shape=[2, 9]), "disagrees with latent_dim"),
    (lambda d: d.update(encoder_sha256="xyz"), "64 lowercase hex"),
    (lambda d: d.update(format_version=3), "newer"),
    (lambda d: d.update(fingerprint="0" * 12), "does not belong"),
    (lambda d: d.update(identity_rows=0), "identity_rows must be 1"),
    (lambda d: d["input"].pop("crop_mode"), "input must hold"),
    (lambda d: d.update(kind="depth"), "kind must be"),
])
def test_bad_info_is_rejected_with_the_reason(tiny, change, words):
    info = model_info(tiny)
    change(info)
    with pytest.raises(InfoError, match=words):
        LatentInfo.parse(json.dumps(info))
    with pytest.raises(InfoError, match="not JSON"):
        LatentInfo.parse("{model: tiny")


def test_message_to_mu_logvar_and_codes_checked_against_the_info(tiny):
    info = LatentInfo.parse(info_json(model_info(tiny)))
    rng = np.random.default_rng(0)
    outputs = {"mu": rng.normal(size=(2, 8)).astype(np.float32), "logvar": rng.normal(size=(2, 8)).astype(np.float32)}
    latent = latent_from_message(message(outputs, 1, info), info)
    np.testing.assert_array_equal(latent.mu, outputs["mu"][1])
    np.testing.assert_array_equal(latent.logvar, outputs["logvar"][1])
    assert latent.mu.dtype == np.float32 and latent.codes is None and latent.z is latent.mu

    wide = message({"mu": np.zeros((1, 9), np.float32), "logvar": np.zeros((1, 9), np.float32)}, 0, info)
    with pytest.raises(InfoMismatch, match="3 x 9 but info .* says 3 x 8"):
        latent_from_message(wide, info)
    nan = message({"mu": np.full((1, 8), np.nan, np.float32), "logvar": np.zeros((1, 8), np.float32)}, 0, info)
    with pytest.raises(InfoMismatch, match="malformed"):
        latent_from_message(nan, info)
    short = message(outputs, 0, info)
    short.data = short.data[:-4]
    with pytest.raises(InfoMismatch, match="malformed"):
        latent_from_message(short, info)
    puzzle = LatentInfo.parse(info_json(model_info(puzzle_meta_bundle())))
    codes = message({"codes": np.full((1, 30, 30), 3, np.uint8)}, 0, puzzle)
    with pytest.raises(InfoMismatch, match="encoding 'mono8'"):
        latent_from_message(codes, info)

    np.testing.assert_array_equal(latent_from_message(codes, puzzle).codes, np.full((30, 30), 3, np.uint8))
    with pytest.raises(InfoMismatch, match="code 10 outside 0..9"):
        latent_from_message(message({"codes": np.full((1, 30, 30), 10, np.uint8)}, 0, puzzle), puzzle)


def test_bundle_found_by_checksum_then_decoder_checksum_then_name(tiny, tmp_path):
    other = tmp_path / "renamed_copy"
    shutil.copytree(tiny.path, other)
    dirs = [tmp_path, tiny.path.parent]
    info = model_info(tiny)
    bundle, how = find_bundle(LatentInfo.parse(info), dirs)
    assert how == "checksum" and bundle.meta["files"] == tiny.meta["files"]
    assert find_bundle(LatentInfo.parse(changed(info, encoder_sha256="0" * 64)), dirs)[1] == "decoder checksum"
    by_name = LatentInfo.parse(changed(info, encoder_sha256="0" * 64, decoder_sha256="1" * 64))
    assert find_bundle(by_name, dirs)[1] == "name"
    with pytest.raises(BundleNotFound, match=f"no bundle for .* in {tmp_path}"):
        find_bundle(by_name, dirs, allow_name=False)
    with pytest.raises(BundleNotFound):
        find_bundle(LatentInfo.parse(changed(info, model="nope", decoder_sha256="1" * 64, encoder_sha256="1" * 64)),
                    dirs)


def test_decode_equals_a_plain_onnxruntime_session_bit_for_bit(tiny):
    import onnxruntime as ort

    info = LatentInfo.parse(info_json(model_info(tiny)))
    rng = np.random.default_rng(1)
    latents = [Latent(mu=rng.normal(size=8).astype(np.float32), logvar=np.zeros(8, np.float32)) for _ in range(3)]
    with LatentDecoder(info, [tiny.path.parent], intra_op_threads=1) as decoder:
        assert decoder.matched_by == "checksum"
        images = [decoder.decode(latent) for latent in latents]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(tiny.path / "decoder.onnx"), options, providers=["CPUExecutionProvider"])
    for latent, image in zip(latents, images):
        (raw,) = session.run(None, {"z": latent.mu[None]})
        expected = np.clip(raw[0].transpose(1, 2, 0) * np.float32(255.0) + np.float32(0.5), 0, 255).astype(np.uint8)
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        np.testing.assert_array_equal(image, expected)
        assert image.std() > 0


def test_shipped_puzzle_bundle_decodes_its_own_codes():
    """The shipped default puzzle bundle, found among installed bundles by the checksums in its info."""
    from sage_ros.ros.params import DEFAULT_BUNDLES

    directory = next(d / DEFAULT_BUNDLES["puzzle"] for d in shipped_model_dirs() if (d / DEFAULT_BUNDLES["puzzle"]).is_dir())
    info = LatentInfo.parse(info_json(model_info(load_bundle(directory))))
    codes = np.random.default_rng(2).integers(0, info["codes"], size=(30, 30)).astype(np.uint8)
    with LatentDecoder(info) as decoder:
        assert decoder.matched_by == "checksum"
        image = decoder.decode_message(message({"codes": codes[None]}, 0, info))
        reference = decoded_to_rgb8(decoder.backend.decode(codes[None].astype(np.int64)), (-1.0, 1.0))[0]
    assert image.shape == (224, 224, 3)
    np.testing.assert_array_equal(image, reference)


def test_stamp_pairer_matches_exactly_in_either_order_and_stays_bounded():
    pairer = StampPairer(capacity=3)
    assert pairer.add_frame(10, "f10") is None
    assert pairer.add_latent(11, "l11") is None  # no frame with that stamp (yet)
    assert pairer.add_latent(10, "l10") == ("f10", "l10")
    assert pairer.add_frame(11, "f11") == ("f11", "l11")
    assert pairer.pending() == (0, 0)
    for stamp in range(20, 25):
        pairer.add_frame(stamp, f"f{stamp}")
    assert pairer.pending() == (3, 0) and pairer.evicted["frames"] == 2
    assert pairer.add_latent(20, "late") is None  # its frame was evicted: bounded, never paired wrongly
    assert pairer.add_latent(24, "l24") == ("f24", "l24")


def test_consumer_imports_neither_torch_nor_rclpy():
    code = ("import sys, sage_ros.runtime.consumer, sage_ros.runtime.latent_info; "
            "print(sorted(m for m in ('torch', 'rclpy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr
