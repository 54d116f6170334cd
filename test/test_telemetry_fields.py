"""Telemetry maths (KL, SAGE's trust, entropy), the field list in <output>/info, and packing to / from the 32FC1
message; one batch of real telemetry from the shipped bundles through the onnxruntime backend."""
import math
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from sage_ros.runtime import telemetry as T
from sage_ros.runtime.bundle import load_bundle
from sage_ros.runtime.image_codec import ImageFields
from sage_ros.runtime.latent_info import LatentInfo, bundle_fingerprint, info_json, model_info

MODELS = Path(__file__).resolve().parents[1] / "models"


def sage_trust(recon_error: float, kl_div: float) -> float:
    """SAGE's TinyVAE IRP plugin, written out as it is there (dp-web4/HRM sage/irp/plugins/tinyvae_irp_plugin.py)."""
    trust_recon = max(0.0, 1.0 - recon_error * 10.0)
    trust_kl = 1.0 / (1.0 + kl_div)
    return max(0.0, min(1.0, 0.5 * trust_recon + 0.5 * trust_kl))


@pytest.mark.parametrize("mse, kl", [(0.0, 0.0), (0.01, 0.5), (0.05, 3.0), (0.1, 0.0), (0.3, 10.0), (0.004, 0.02)])
def test_trust_is_sages_formula(mse, kl):
    assert T.trust(mse, kl) == pytest.approx(sage_trust(mse, kl), abs=1e-12)


def test_kl_per_dim_matches_the_closed_form():
    assert T.kl_per_dim(np.zeros((1, 8)), np.zeros((1, 8)))[0] == 0.0  # the posterior is the prior
    mu, logvar = np.array([[1.0, -2.0]]), np.array([[0.0, math.log(4.0)]])
    # per dim: 0.5 (sigma^2 + mu^2 - 1 - log sigma^2): 0.5 (1 + 1 - 1 - 0) = 0.5; 0.5 (4 + 4 - 1 - log 4)
    expected = (0.5 + 0.5 * (4 + 4 - 1 - math.log(4.0))) / 2
    assert T.kl_per_dim(mu, logvar)[0] == pytest.approx(expected)


def test_code_histogram_and_entropy():
    one_code = np.full((1, 30, 30), 3, np.uint8)
    uniform = (np.arange(900) % 10).reshape(1, 30, 30).astype(np.uint8)
    hist = T.code_histogram(np.concatenate([one_code, uniform]), 10)
    assert hist.tolist() == [[0, 0, 0, 900, 0, 0, 0, 0, 0, 0], [90] * 10]
    entropy = T.entropy_bits(hist)
    assert entropy[0] == 0.0 and entropy[1] == pytest.approx(math.log2(10))


def test_recon_mse_and_psnr_are_measured_in_unit_range():
    a, b = np.zeros((1, 3, 4, 4), np.float32), np.full((1, 3, 4, 4), 0.1, np.float32)
    assert T.recon_mse(a, b, (0.0, 1.0))[0] == pytest.approx(0.01)
    assert T.recon_mse(a - 1, b * 2 - 1, (-1.0, 1.0))[0] == pytest.approx(0.01)  # [-1, 1] scaled to [0, 1]
    assert T.psnr_db(0.01) == pytest.approx(20.0)


def test_pack_unpack_and_the_message_round_trip():
    fields = T.fields_for("latent")
    values = {name: float(i) for i, (name, _) in enumerate(fields)}
    row = T.pack(values, fields)
    assert row.shape == (1, len(fields)) and row.dtype == np.float32
    assert T.unpack(row, fields) == values
    assert math.isnan(T.unpack(T.pack({}, fields), fields)["trust"])  # missing = NaN, never a made-up number
    with pytest.raises(T.TelemetryError, match="names"):
        T.unpack(row[:, :-1], fields)
    header = SimpleNamespace(stamp=SimpleNamespace(sec=3, nanosec=7), frame_id="cam")
    msg = T.telemetry_images([values], fields, [header], msg_factory=lambda: ImageFields(data=np.empty(0, np.uint8)))[0]
    assert (msg.encoding, msg.height, msg.width, msg.header) == ("32FC1", 1, len(fields), header)
    info = {"telemetry": T.telemetry_info("latent")}
    assert T.telemetry_from_message(msg, info) == values
    with pytest.raises(T.TelemetryError, match="no telemetry field list"):
        T.telemetry_from_message(msg, {"model": "old"})


def test_info_lists_every_field_with_its_unit():
    for name, kind in (("tinyvae_l64_fp32", "latent"), ("puzzle_l64_fp32", "puzzle")):
        info = LatentInfo.parse(info_json(model_info(load_bundle(MODELS / name))))
        spec = info["telemetry"]
        assert spec["fields"] == [f for f, _ in T.fields_for(kind)]
        assert len(spec["units"]) == len(spec["fields"]) and spec["encoding"] == "32FC1"
        assert spec["topic"] == "telemetry"
        for common in ("crop_x", "crop_y", "crop_w", "crop_h", "motion_found", "encode_ms", "total_ms",
                       "recon_mse", "recon_psnr_db"):
            assert common in spec["fields"]
    assert "telemetry" in info.raw and "trust" not in info["telemetry"]  # the puzzle has no KL, so no trust
    assert "0.5/(1+kl_per_dim)" in model_info(load_bundle(MODELS / "tinyvae_l8_fp32"))["telemetry"]["trust"]


@pytest.fixture(scope="module")
def tiny():
    from sage_ros.runtime.backends import make_backend

    with make_backend(load_bundle(MODELS / "tinyvae_l64_fp32"), "onnxruntime", "cpu", intra_op_threads=1) as backend:
        yield backend


def test_batch_telemetry_of_the_shipped_tinyvae(tiny):
    from sage_ros.runtime.preprocess import Preprocessor
    from runtime_helpers import real_frames

    frames = list(real_frames(3))
    frames[2] = np.zeros_like(frames[2])  # a black frame, which the model reconstructs differently
    prepared = Preprocessor.from_bundle(tiny.bundle, "center").prepare(frames, [0, 1, 2])
    outputs = dict(tiny.encode(prepared.batch), fingerprint=np.array([bundle_fingerprint(tiny.bundle)] * 3))
    received = [time.monotonic() - 0.010] * 3
    rows = T.batch_telemetry(tiny, prepared, outputs, frames_hw=[f.shape[:2] for f in frames], encode_s=0.002,
                             received=received, sources_hw=[None, (480, 640), None])
    recon = tiny.decode(outputs["mu"])
    for index, row in enumerate(rows):
        mse = float(np.mean((recon[index].astype(np.float64) - prepared.batch[index]) ** 2))
        assert row["recon_mse"] == pytest.approx(mse, rel=1e-5)
        assert row["recon_psnr_db"] == pytest.approx(10 * math.log10(1 / mse), rel=1e-5)
        kl = float(T.kl_per_dim(outputs["mu"][index], outputs["logvar"][index]))
        assert row["kl_per_dim"] == pytest.approx(kl) and row["trust"] == pytest.approx(sage_trust(mse, kl))
        assert row["latent_norm"] == pytest.approx(float(np.linalg.norm(outputs["mu"][index])), rel=1e-6)
        assert row["latent_dim"] == 64.0 and row["encode_ms"] == pytest.approx(2.0)
        assert row["total_ms"] >= 10.0
        assert row["input_std"] == pytest.approx(float(prepared.batch[index].std()), rel=1e-5)
    assert rows[0]["input_std"] > 0.1 and rows[2]["input_std"] == 0.0  # a photo vs the black frame
    assert (rows[0]["crop_x"], rows[0]["crop_y"], rows[0]["crop_w"], rows[0]["crop_h"]) == (40, 0, 240, 240)
    assert (rows[0]["source_width"], rows[0]["source_height"]) == (320, 240)
    # frame 1 was (say) a 640x480 JPEG decoded at half size: its window is reported in the source's pixels
    assert (rows[1]["crop_x"], rows[1]["crop_w"], rows[1]["source_width"]) == (80, 480, 640)
    packed = T.pack(rows[0], T.bundle_fields(tiny.bundle))
    assert np.isfinite(packed).all()
    # the model's fingerprint travels as three exact 16-bit words; telemetry of another model is refused
    info = model_info(tiny.bundle)
    assert T.telemetry_fingerprint(T.unpack(packed, T.bundle_fields(tiny.bundle))) == info["fingerprint"]
    msg = T.telemetry_images(rows[:1], T.bundle_fields(tiny.bundle), [None],
                             msg_factory=lambda: ImageFields(data=np.empty(0, np.uint8)))[0]
    assert T.telemetry_from_message(msg, info)["trust"] == pytest.approx(rows[0]["trust"])
    with pytest.raises(T.TelemetryError, match="made by model"):
        T.telemetry_from_message(msg, dict(info, fingerprint="0123456789ab"))


def test_batch_telemetry_of_the_shipped_puzzle_with_and_without_decode():
    from sage_ros.runtime.backends import make_backend
    from sage_ros.runtime.preprocess import Preprocessor
    from runtime_helpers import real_frames

    frames = list(real_frames(2))
    with make_backend(load_bundle(MODELS / "puzzle_l64_fp32"), "onnxruntime", "cpu", intra_op_threads=1) as backend:
        prepared = Preprocessor.from_bundle(backend.bundle, "resize").prepare(frames)
        outputs = backend.encode(prepared.batch)
        cheap = T.batch_telemetry(backend, prepared, outputs, frames_hw=[f.shape[:2] for f in frames], decode=False)
        full = T.batch_telemetry(backend, prepared, outputs, frames_hw=[f.shape[:2] for f in frames], decode=True)
    for row, codes in zip(cheap, outputs["codes"]):
        hist = [row[f"code_hist_{k}"] for k in range(10)]
        assert sum(hist) == 900 and hist == np.bincount(codes.ravel(), minlength=10).tolist()
        assert 0 < row["code_entropy_bits"] <= math.log2(10)
        assert math.isnan(row["recon_mse"]) and math.isnan(row["total_ms"])  # not computed: NaN, documented
    assert all(0 < row["recon_mse"] < 0.2 and row["recon_psnr_db"] > 7 for row in full)
    assert T.pack(full[0], T.bundle_fields(backend.bundle)).shape == (1, 26)
    assert all(row["input_std"] == other["input_std"] > 0.05 for row, other in zip(cheap, full))  # real frames


def test_warm_decoder_opens_the_decoder_only_when_telemetry_will_decode():
    from sage_ros.runtime.backends import make_backend

    for name, publish, puzzle_decode, opened in (("tinyvae_l8_fp32", True, False, True),
                                                 ("tinyvae_l8_fp32", False, False, False),
                                                 ("puzzle_l64_fp32", True, False, False),
                                                 ("puzzle_l64_fp32", True, True, True)):
        with make_backend(load_bundle(MODELS / name), "onnxruntime", "cpu", intra_op_threads=1) as backend:
            T.warm_decoder(backend, publish, puzzle_decode)
            assert (backend._decoder is not None) == opened, (name, publish, puzzle_decode)
