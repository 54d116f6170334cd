"""Backends: onnxruntime vs torch parity (seeded bundles exported here + every bundle shipped under models/),
the one interface's error paths, auto selection and fallbacks, and the TensorRT engine-cache logic.

Tolerances (documented in docs/runtime.md), on real photographs, against the torch float32 reference:
  fp32: max |diff| <= 1e-4 on mu / logvar / decoded pixels; VQ code agreement >= 0.999
  fp16: max |diff| <= 2e-2 * max(1, max |reference|); VQ code agreement >= 0.95 (measured 0.980 on the seeded bundle)
  int8 / int4 (shipped bundles): relative L2 of mu <= 0.15; VQ code agreement >= 0.9
"""
import json
from pathlib import Path

import numpy as np
import pytest

from runtime_helpers import export_seeded, real_frames
from sage_ros.runtime.backends import (BACKENDS, BackendError, BackendUnavailable, choose_backend,
                                       make_backend, tensorrt_importable)
from sage_ros.runtime.backends.engine_cache import EngineCache, default_cache_dir, engine_cache_key
from sage_ros.runtime.backends.onnxruntime_backend import choose_providers
from sage_ros.runtime.bundle import load_bundle
from sage_ros.runtime.preprocess import Preprocessor

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.parent for p in (REPO / "models").glob("*/bundle.json"))
TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("backend_bundles")
    return {(arch, prec): export_seeded(arch, prec, root / f"{arch}-{prec}")
            for arch in ("TinyVAE", "TinyVAE32", "VisionPuzzleVAE") for prec in ("fp32", "fp16")}


@pytest.fixture(scope="module")
def frames():
    return real_frames(6)


def assert_parity(bundle_dir, frames, torch_device="cpu"):
    bundle = load_bundle(bundle_dir)
    inputs = Preprocessor.from_bundle(bundle, "center")(list(frames))
    with make_backend(bundle, "onnxruntime") as ort_backend, \
            make_backend(bundle, "torch", device=torch_device) as torch_backend:
        got, ref = ort_backend.encode(inputs), torch_backend.encode(inputs)
        assert set(got) == set(ref) == set(bundle.encoder_outputs)
        if bundle.is_vq:
            assert got["codes"].dtype == np.uint8 and got["codes"].shape == (len(frames), 30, 30)
            assert len(np.unique(ref["codes"])) > 1, "degenerate test: every cell got the same code"
            agreement = float((got["codes"] == ref["codes"]).mean())
            needed = {"fp32": 0.999, "fp16": 0.95}.get(bundle.precision, 0.9)
            assert agreement >= needed, f"code agreement {agreement:.4f} < {needed}"
            latent = ref["codes"]
        else:
            for name in ("mu", "logvar"):
                _assert_close(got[name], ref[name], bundle.precision, name)
            latent = ref["mu"]
        decoded, decoded_ref = ort_backend.decode(latent), torch_backend.decode(latent)
        lo, hi = bundle.input_range
        assert decoded.min() >= lo - 1e-3 and decoded.max() <= hi + 1e-3
        if bundle.precision in TOLERANCE:
            _assert_close(decoded, decoded_ref, bundle.precision, "decoded image")


def _assert_close(got, ref, precision, what):
    if precision in TOLERANCE:
        scale = max(1.0, float(np.abs(ref).max())) if precision == "fp16" else 1.0
        err = float(np.abs(got - ref).max())
        assert err <= TOLERANCE[precision] * scale, f"{what}: max |diff| {err:.3g} ({precision})"
    else:  # quantized bundles: their own graph quantizes activations too
        rel = float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-12))
        assert rel <= 0.15, f"{what}: relative L2 {rel:.3g} ({precision})"


@pytest.mark.parametrize("arch", ["TinyVAE", "TinyVAE32", "VisionPuzzleVAE"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_onnxruntime_matches_torch_on_seeded_bundles(bundles, frames, arch, precision):
    assert_parity(bundles[(arch, precision)], frames)


@pytest.mark.parametrize("bundle_dir", SHIPPED or [None], ids=[p.name for p in SHIPPED] or ["none"])
def test_onnxruntime_matches_torch_on_shipped_bundles(bundle_dir, frames):
    if bundle_dir is None:
        pytest.skip("no bundles under models/ yet")
    if "torch_weights" not in json.loads((bundle_dir / "bundle.json").read_text()):
        pytest.skip(f"{bundle_dir.name} has no torch_weights: re-export it (export.save_reference_weights) so the "
                    "torch reference can be built")
    assert_parity(bundle_dir, frames)


@pytest.mark.parametrize("arch", ["TinyVAE", "VisionPuzzleVAE"])
def test_torch_cuda_reference_matches_onnxruntime_cpu(bundles, frames, arch):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    assert_parity(bundles[(arch, "fp32")], frames, torch_device="cuda:0")


def test_uint8_frames_and_float_batches_give_the_same_latent(bundles, frames):
    with make_backend(bundles[("TinyVAE", "fp32")], "onnxruntime") as backend:
        from_frames = backend.encode(frames)
        from_floats = backend.encode(Preprocessor.from_bundle(backend.bundle, "resize")(list(frames)))
        single = backend.encode(frames[0])
    np.testing.assert_array_equal(from_frames["mu"], from_floats["mu"])
    np.testing.assert_allclose(single["mu"][0], from_frames["mu"][0], atol=1e-5)


def test_backend_error_paths(bundles):
    backend = make_backend(bundles[("TinyVAE", "fp32")], "onnxruntime", intra_op_threads=1)
    backend.warmup()
    info = backend.describe()
    assert info["backend"] == "onnxruntime" and info["providers"] == ["CPUExecutionProvider"]
    with pytest.raises(BackendError, match="N x 3 x 64 x 64"):
        backend.encode(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(BackendError, match="NaN or inf"):
        backend.encode(np.full((1, 3, 64, 64), np.nan, np.float32))
    with pytest.raises(BackendError, match="decoder input"):
        backend.decode(np.zeros((1, 9), np.float32))
    backend.close()
    with pytest.raises(BackendError, match="closed"):
        backend.encode(np.zeros((1, 3, 64, 64), np.float32))


def test_vq_decoder_rejects_bad_codes(bundles):
    with make_backend(bundles[("VisionPuzzleVAE", "fp32")], "onnxruntime") as backend:
        with pytest.raises(BackendError, match="0..9"):
            backend.decode(np.full((1, 30, 30), 10, np.int64))
        with pytest.raises(BackendError, match="integers"):
            backend.decode(np.zeros((1, 30, 30), np.float32))
        assert backend.decode(np.zeros((30, 30), np.uint8)).shape == (1, 3, 224, 224)


def test_torch_backend_needs_weights(bundles, tmp_path):
    import shutil

    copy = tmp_path / "noweights"
    shutil.copytree(bundles[("TinyVAE", "fp32")], copy)
    meta = json.loads((copy / "bundle.json").read_text())
    del meta["torch_weights"]
    (copy / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BackendUnavailable, match="torch backend needs `torch_weights`"):
        make_backend(copy, "torch")


def test_names_and_devices_are_validated(bundles):
    with pytest.raises(ValueError, match="backend must be one of"):
        make_backend(bundles[("TinyVAE", "fp32")], "tflite")
    with pytest.raises(ValueError, match="device must be"):
        make_backend(bundles[("TinyVAE", "fp32")], "onnxruntime", device="gpu0")
    assert BACKENDS == ("auto", "onnxruntime", "tensorrt", "torch")


def test_auto_selection_rules():
    assert choose_backend("auto", "cpu", tensorrt_ok=True) == "onnxruntime"  # CPU asked: never TensorRT
    assert choose_backend("auto", "cuda:0", tensorrt_ok=True) == "tensorrt"
    assert choose_backend("auto", "cuda:0", tensorrt_ok=False) == "onnxruntime"
    assert choose_backend("torch", "cuda:1", tensorrt_ok=True) == "torch"


def test_onnxruntime_provider_choice():
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    providers, note = choose_providers("cuda", 1, gpu, "fp16", Path("/cache"))
    assert [p[0] if isinstance(p, tuple) else p for p in providers] == gpu and note is None
    trt_options = providers[0][1]
    assert trt_options["device_id"] == 1 and trt_options["trt_fp16_enable"] and not trt_options["trt_int8_enable"]
    assert trt_options["trt_engine_cache_path"] == "/cache"
    providers, _ = choose_providers("cuda", 0, gpu, "int8", None, use_tensorrt_ep=False)
    assert providers[0][0] == "CUDAExecutionProvider"
    providers, note = choose_providers("cuda", 0, ["CPUExecutionProvider"], "fp32", None)
    assert providers == ["CPUExecutionProvider"] and "onnxruntime-gpu" in note
    assert choose_providers("cpu", 0, gpu, "fp32", None) == (["CPUExecutionProvider"], None)


def test_onnxruntime_cuda_request_without_gpu_falls_back_or_fails_when_strict(bundles):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: no fallback to test")
    with make_backend(bundles[("TinyVAE", "fp32")], "onnxruntime", device="cuda:0") as backend:
        assert backend.providers == ["CPUExecutionProvider"] and "fallback" in backend.describe()
    with pytest.raises(BackendUnavailable, match="onnxruntime-gpu"):
        make_backend(bundles[("TinyVAE", "fp32")], "onnxruntime", device="cuda:0", strict_device=True)


@pytest.mark.skipif(tensorrt_importable(), reason="tensorrt is installed: the unavailable path cannot be tested")
def test_tensorrt_unavailable_is_explained_and_auto_falls_back(bundles):
    with pytest.raises(BackendUnavailable, match="TensorRT 10 Python package"):
        make_backend(bundles[("TinyVAE", "fp32")], "tensorrt", device="cuda:0")
    with make_backend(bundles[("TinyVAE", "fp32")], "auto", device="cuda:0") as backend:
        assert backend.name == "onnxruntime"


def test_tensorrt_refuses_cpu(bundles):
    pytest.importorskip("tensorrt", reason="tensorrt not importable")
    with pytest.raises(BackendUnavailable, match="GPU"):
        make_backend(bundles[("TinyVAE", "fp32")], "tensorrt", device="cpu")


# --- TensorRT engine cache (pure logic: runs everywhere) --------------------------------------------------------

KEY = {"onnx_sha256": "ab" * 32, "trt_version": "10.3.0", "gpu_name": "Orin", "precision": "fp16", "max_batch": 8}


def test_cache_key_changes_with_every_part():
    base = engine_cache_key(**KEY)
    assert base == engine_cache_key(**dict(KEY))
    for part, value in [("onnx_sha256", "cd" * 32), ("trt_version", "10.4.0"), ("gpu_name", "RTX 4090"),
                        ("precision", "int8"), ("max_batch", 4)]:
        assert engine_cache_key(**{**KEY, part: value}) != base, part


def test_engine_cache_hit_build_and_rebuild(tmp_path):
    cache = EngineCache(tmp_path / "cache")
    builds = []

    def build():
        builds.append(1)
        return b"engine-%d" % len(builds)

    def deserialize(blob):
        return None if blob == b"corrupt" else ("engine", blob)

    assert cache.get_or_build("encoder", KEY, build, deserialize) == ("engine", b"engine-1")
    assert cache.last_event == "built"
    assert cache.get_or_build("encoder", KEY, build, deserialize) == ("engine", b"engine-1")
    assert cache.last_event == "hit" and len(builds) == 1
    cache.get_or_build("encoder", {**KEY, "trt_version": "10.7.0"}, build, deserialize)  # TensorRT upgrade
    assert cache.last_event == "built" and len(builds) == 2
    path = cache.engine_path("encoder", engine_cache_key(**KEY))
    path.write_bytes(b"corrupt")
    assert cache.get_or_build("encoder", KEY, build, deserialize) == ("engine", b"engine-3")
    assert cache.last_event.startswith("rebuilt (cached engine could not be deserialized")
    path.with_suffix(".json").write_text("{}")
    cache.get_or_build("encoder", KEY, build, deserialize)
    assert cache.last_event.startswith("rebuilt (cache sidecar missing or key mismatch") and len(builds) == 4
    assert json.loads(path.with_suffix(".json").read_text())["gpu_name"] == "Orin"
    assert cache.timing_cache_path("10.3.0", "NVIDIA Orin (nvgpu)").name == "timing-10.3.0-NVIDIA_Orin_nvgpu_.cache"


def test_engine_cache_build_failure_leaves_nothing(tmp_path):
    cache = EngineCache(tmp_path)

    def failing_build():
        raise BackendError("parser failed")

    with pytest.raises(BackendError, match="parser failed"):
        cache.get_or_build("encoder", KEY, failing_build, lambda blob: blob)
    assert not list(tmp_path.glob("*.engine"))


def test_cache_dir_beside_bundle_else_user_cache(tmp_path, monkeypatch):
    bundle_dir = tmp_path / "bundle"
    bundle_dir.mkdir()
    assert default_cache_dir(bundle_dir) == bundle_dir / ".engine_cache"
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / ".engine_cache").write_text("a file where the cache folder would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    fallback = default_cache_dir(blocked)
    assert fallback.parent == tmp_path / "xdg" / "sage_ros" / "engines" and fallback.is_dir()


# --- real TensorRT (skips with a reason where it does not import) -----------------------------------------------

def _tensorrt_gpu():
    if not tensorrt_importable():
        pytest.skip("tensorrt is not importable here (CPU machine); engine tests run on a Jetson / GPU host")
    from sage_ros.runtime.backends.tensorrt_backend import gpu_available
    if not gpu_available():
        pytest.skip("tensorrt imports but no CUDA device (or cuda-python) is available")


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_engine_matches_onnxruntime_and_is_cached(bundles, frames, precision, tmp_path):
    _tensorrt_gpu()
    bundle = load_bundle(bundles[("TinyVAE", precision)])
    inputs = Preprocessor.from_bundle(bundle, "center")(list(frames))
    with make_backend(bundle, "tensorrt", device="cuda:0", max_batch=4, cache_dir=tmp_path) as trt_backend:
        assert trt_backend.cache.last_event == "built"
        got = trt_backend.encode(inputs)  # 6 frames > max_batch 4: runs in two chunks
    with make_backend(bundle, "tensorrt", device="cuda:0", max_batch=4, cache_dir=tmp_path) as again:
        assert again.cache.last_event == "hit"
    with make_backend(bundle, "onnxruntime") as reference:
        ref = reference.encode(inputs)
    np.testing.assert_allclose(got["mu"], ref["mu"], atol=2e-2 * max(1.0, float(np.abs(ref["mu"]).max())))


def test_tensorrt_engine_precision_follows_the_bundle():
    from sage_ros.runtime.backends.tensorrt_backend import TensorRTBackend

    build = TensorRTBackend._build_precision
    assert build("int8", fp16=False) == "int8"  # QDQ graph: INT8 (+FP16) flags, no calibrator
    assert build("fp16", fp16=False) == "fp16" and build("int4", fp16=False) == "fp16"
    assert build("fp32", fp16=True) == "fp16" and build("fp32", fp16=False) == "fp32"
