"""metrics.py (cross-checked against skimage) and evaluate_pair / PCA baseline on trained models."""
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from quant_helpers import one_torch_thread  # noqa: F401  (autouse fixture)
from quant_helpers import smooth_images, trained_model
from sage_ros.compression import metrics
from sage_ros.compression.evaluate import EvaluationError, evaluate_pair, evaluate_single, pca_baseline
from sage_ros.compression.quantize import Int4Config, Int8Config, quantize_


def _pair(seed, size=32, noise=0.1):
    a = smooth_images(3, size, seed).astype(np.float64) / 255
    rng = np.random.default_rng(seed)
    b = np.clip(a + rng.normal(0, noise, a.shape), 0, 1)
    return a, b


@pytest.mark.parametrize("seed,size,noise", [(0, 32, 0.1), (1, 64, 0.03), (2, 17, 0.3), (3, 64, 0.001)])
def test_ssim_matches_skimage_gaussian_wang(seed, size, noise):
    a, b = _pair(seed, size, noise)
    expected = [structural_similarity(a[i], b[i], gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                      data_range=1.0, channel_axis=-1) for i in range(len(a))]
    nchw = lambda arr: torch.from_numpy(arr.transpose(0, 3, 1, 2))  # noqa: E731
    got = metrics.ssim_per_image(nchw(a), nchw(b)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert metrics.ssim(nchw(a), nchw(a)) == pytest.approx(1.0)


def test_psnr_mse_known_values_and_shape_errors():
    a = torch.full((2, 3, 16, 16), 0.5, dtype=torch.float64)
    b = a + 0.1
    assert metrics.psnr(a, b) == pytest.approx(20.0, abs=1e-6)
    assert metrics.psnr(a, a) == pytest.approx(100.0)
    with pytest.raises(ValueError):
        metrics.psnr(a, b[:, :2])
    with pytest.raises(ValueError):
        metrics.ssim(a[..., :8, :8], a[..., :8, :8])
    d = metrics.latent_drift(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]]))
    assert d["mu_rel_l2"] == pytest.approx(1.0) and d["mu_cosine"] == pytest.approx(2 ** -0.5)


def test_evaluate_pair_self_is_exact_and_quantized_drifts():
    images = smooth_images(40, 64, seed=5)  # not the training images (seed 0)
    ref = trained_model("TinyVAE", 16)
    ref.train()  # evaluate_pair must evaluate on the deterministic path and restore the mode
    same = evaluate_pair(ref, trained_model("TinyVAE", 16), images, batch_size=16)
    assert ref.training
    assert same["n_images"] == 40 and same["mu_rel_l2"] == 0 and same["mu_cosine"] == pytest.approx(1)
    assert same["delta_psnr"] == 0 and same["psnr"] == same["reference"]["psnr"]
    assert 0 < same["mse"] < 0.1 and 0 < same["ssim"] < 1
    r8 = evaluate_pair(ref, quantize_(trained_model("TinyVAE", 16), Int8Config()), images)
    r4 = evaluate_pair(ref, quantize_(trained_model("TinyVAE", 16), Int4Config(rounding="minmax")), images)
    assert 0 < r8["mu_rel_l2"] < r4["mu_rel_l2"] < 0.5
    assert r4["mu_cosine"] < r8["mu_cosine"] < 1
    assert "code_agreement" not in r8


def test_evaluate_pair_vq_code_agreement():
    images = smooth_images(4, 224, seed=3)
    ref = trained_model("VisionPuzzleVAE", 8, steps=5)
    same = evaluate_pair(ref, trained_model("VisionPuzzleVAE", 8, steps=5), images)
    assert same["code_agreement"] == 100.0 and same["mu_rel_l2"] == 0
    q = evaluate_pair(ref, quantize_(trained_model("VisionPuzzleVAE", 8, steps=5), Int4Config()), images)
    assert 0 <= q["code_agreement"] <= 100 and q["mu_rel_l2"] > 0


def test_bad_images_raise():
    model = trained_model("TinyVAE", 4, steps=1)
    with pytest.raises(EvaluationError):
        evaluate_single(model, smooth_images(2, 32))
    with pytest.raises(EvaluationError):
        evaluate_single(model, smooth_images(2, 64).astype(np.float32))
    with pytest.raises(EvaluationError):
        evaluate_pair(model, trained_model("TinyVAE32", 4, steps=1), smooth_images(2, 64))


def test_pca_baseline_improves_with_components():
    train, test = smooth_images(60, 32, seed=1), smooth_images(20, 32, seed=2)
    few, more = pca_baseline(train, test, 2), pca_baseline(train, test, 16)
    assert more["mse"] < few["mse"] and more["psnr"] > few["psnr"]
    capped = pca_baseline(train[:10], test, 64)
    assert capped["n_components"] == 9 and capped["n_components_requested"] == 64
    exact = pca_baseline(train, train, 59)  # full rank on its own training set: (near) exact
    assert exact["mse"] < 1e-8


def test_evaluating_a_tampered_bundle_fails(tmp_path):
    from sage_ros.compression.export import export_bundle

    model = trained_model("TinyVAE", 4, steps=1)
    out = export_bundle(model, tmp_path / "b", name="b")
    assert evaluate_single(out, smooth_images(2, 64))["n_images"] == 2
    data = bytearray((out / "decoder.onnx").read_bytes())
    data[-20] ^= 0xFF
    (out / "decoder.onnx").write_bytes(bytes(data))
    with pytest.raises(EvaluationError, match="sha256|decoder"):
        evaluate_single(out, smooth_images(2, 64))
