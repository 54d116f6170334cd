"""Online augmentation, the sigma-VAE objective, active latent dims, the held-out curve, EMA, and the
TinyVAELinSkip variant's interface and FLOP budget."""
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from sage_ros.compression.augment import AugmentConfig, OnlineCrops, TrainSources, colour_jitter, sample_window
from sage_ros.compression.held_out import ACTIVE_KL_NATS, evaluate_reconstruction, held_out_curve
from sage_ros.compression.losses import gaussian_vae_loss, sigma_vae_nll
from sage_ros.compression.train import fit, train
from sage_ros.compression.train_config import TrainConfig
from sage_ros.compression.checkpoints import load_checkpoint
from sage_ros.compression.datasets import synthetic_images
from sage_ros.data import data_root
from sage_ros.models import TinyVAE, TinyVAELinSkip, build_model


def _sources(seed: int = 0) -> TrainSources:
    """Three synthetic 'photos' of different shapes and a few 'video frames' (no make data needed)."""
    rng = np.random.default_rng(seed)
    photos = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((120, 200), (300, 90), (64, 64))]
    frames = [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(3)]
    return TrainSources(photos, frames, ["a", "b", "c"], [10, 12, 14])


def test_online_batches_are_a_function_of_seed_step_rank():
    crops = OnlineCrops(_sources(), 32, seed=5)
    a = crops.make_batch(7, 16)
    assert a.shape == (16, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, crops.make_batch(7, 16))
    assert not np.array_equal(a, crops.make_batch(8, 16))
    assert not np.array_equal(a, crops.make_batch(7, 16, rank=1))
    assert not np.array_equal(a, OnlineCrops(_sources(), 32, seed=6).make_batch(7, 16))


def test_prefetch_serves_the_same_batches_in_order_and_out_of_order():
    crops = OnlineCrops(_sources(), 32, seed=1)
    expected = [crops.make_batch(s, 8) for s in range(3, 9)]
    crops.start_prefetch(3, 8)
    try:
        got = [crops.batch(s, 8) for s in range(3, 9)]
        assert all(np.array_equal(g, e) for g, e in zip(got, expected))
        assert np.array_equal(crops.batch(4, 8), expected[1])  # a step already passed is recomputed
    finally:
        crops.stop_prefetch()


@pytest.mark.parametrize("height,width", [(64, 64), (480, 640), (1000, 70), (70, 1000)])
def test_windows_stay_inside_and_span_scales_and_aspects(height, width):
    rng = np.random.default_rng(0)
    cfg = AugmentConfig()
    windows = [sample_window(rng, height, width, 64, cfg) for _ in range(400)]
    for y, x, h, w in windows:
        assert 0 <= y and y + h <= height and 0 <= x and x + w <= width and h >= 1 and w >= 1
    if min(height, width) >= 480:
        sides = np.array([np.sqrt(h * w) for _, _, h, w in windows])
        aspects = np.array([w / h for _, _, h, w in windows])
        assert sides.min() < 0.3 * min(height, width) and sides.max() > 0.8 * min(height, width)
        assert aspects.min() < 0.75 and aspects.max() > 1.33  # squashed like crop_mode=resize frames


def test_colour_jitter_is_mild_and_zero_is_identity():
    rng = np.random.default_rng(0)
    crop = np.full((8, 8, 3), 128, np.uint8)
    assert colour_jitter(crop, rng, 0.0) is crop
    out = colour_jitter(crop, rng, 0.1)
    assert out.dtype == np.uint8 and np.abs(out.astype(int) - 128).max() <= 0.1 * 128 * 3 + 1


@pytest.mark.skipif(not (data_root() / "crops" / "splits.json").is_file(), reason="needs `make data`")
def test_train_sources_are_the_training_split_only():
    import json
    splits = json.loads((data_root() / "crops" / "splits.json").read_text())
    sources = TrainSources.load()
    assert sources.names == sorted(splits["photos"]["train"])
    assert not set(sources.names) & (set(splits["photos"]["test"]) | set(splits["photos"]["val"]))
    lo, hi = splits["video"]["ranges"]["train"]
    assert lo <= min(sources.frame_indices) and max(sources.frame_indices) < hi


def test_sigma_vae_nll_is_the_gaussian_nll_at_the_optimal_sigma():
    torch.manual_seed(0)
    x, y = torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 8)
    mse = ((x - y) ** 2).mean()
    d = x[0].numel()
    # sum over pixels of (x-y)^2 / (2 s^2) + log s, averaged over the batch, at s^2 = MSE
    direct = (((x - y) ** 2) / (2 * mse) + 0.5 * torch.log(mse)).sum() / len(x)
    assert sigma_vae_nll(y, x).item() == pytest.approx(direct.item(), rel=1e-5)
    assert sigma_vae_nll(y, x).item() == pytest.approx(0.5 * d * (1 + torch.log(mse)).item(), rel=1e-5)
    loss, logs = gaussian_vae_loss((y, torch.zeros(4, 2), torch.zeros(4, 2)), x, 1.0, "sigma")
    assert loss.item() == pytest.approx(sigma_vae_nll(y, x).item(), rel=1e-6)  # zero KL at the prior
    with pytest.raises(ValueError):
        TrainConfig(recon="nope")


def test_active_dims_count_only_informative_latents():
    class Fixed(torch.nn.Module):  # dim 0 tracks the image, dim 1 sits at the prior
        image_size, input_range, latent_dim = 16, (0.0, 1.0), 2

        def forward(self, x):
            m = x.mean(dim=(1, 2, 3))
            mu = torch.stack([(m - 0.5) * 10, torch.zeros_like(m)], 1)
            return x, mu, torch.zeros_like(mu)
    Fixed.__name__ = "TinyVAE"  # evaluate_reconstruction dispatches on the architecture name
    images = synthetic_images(16, 16)
    result = evaluate_reconstruction(Fixed(), images)
    assert result["active_dims"] == 1
    assert result["kl"] > ACTIVE_KL_NATS


class _Killed(Exception):
    pass


def test_fit_on_online_crops_writes_a_curve_and_resumes_identically(tmp_path):
    cfg = TrainConfig(steps=6, batch_size=4, eval_every=3, eval_images=8, checkpoint_every=3, ema=0.9,
                      progress_bar=False, lr=1e-3)
    val = synthetic_images(8, 64)

    def run(run_dir, kill_at=None):
        torch.manual_seed(0)
        model = TinyVAE(4)

        def loss(module, x, step, total):
            if step == kill_at:
                raise _Killed()
            return gaussian_vae_loss(module(x), x, 0.001)
        return model, fit(model, loss, OnlineCrops(_sources(), 64, seed=2), cfg, run_dir,
                          curve=held_out_curve(val, cfg, val[:4]))

    model_a, stats = run(tmp_path / "a")
    points = stats["curve"]
    assert [p["step"] for p in points] == [3, 6]
    assert [p["images_seen"] for p in points] == [12, 24]
    assert all({"val_psnr", "val_active_dims", "train_psnr", "val_psnr_raw", "train_loss"} <= set(p) for p in points)
    assert (tmp_path / "a" / "curve.json").is_file()
    ckpt = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    assert "ema" in ckpt and len(ckpt["curve"]) == 2
    # killed after the step-3 checkpoint, then resumed: the same weights (EMA) and curve as the uninterrupted run
    with pytest.raises(_Killed):
        run(tmp_path / "b", kill_at=4)
    model_b, stats_b = run(tmp_path / "b")
    for (ka, va), (kb, vb) in zip(model_a.state_dict().items(), model_b.state_dict().items()):
        assert torch.equal(va, vb), ka
    assert [p["step"] for p in stats_b["curve"]] == [3, 6]
    assert stats_b["curve"][1]["val_psnr"] == pytest.approx(points[1]["val_psnr"], abs=1e-9)


def test_train_defaults_to_online_crops_for_bundled_data(monkeypatch, tmp_path):
    import sage_ros.compression.train as train_mod
    seen = {}

    def fake_fit(module, loss_fn, images, cfg, run_dir, **kw):
        seen["images"] = images
        raise RuntimeError("stop")
    monkeypatch.setattr(train_mod, "fit", fake_fit)
    monkeypatch.setattr("sage_ros.compression.augment.TrainSources.load", classmethod(lambda cls, *a, **k: _sources()))
    with pytest.raises(RuntimeError):
        train(TinyVAE(4), TrainConfig(data="bundled"), tmp_path)
    assert isinstance(seen["images"], OnlineCrops)
    with pytest.raises(RuntimeError):
        train(TinyVAE(4), TrainConfig(data="synthetic", augment=True), tmp_path)
    assert isinstance(seen["images"], np.ndarray)  # only the bundled sources have photos to crop from


def _encoder_macs(model, size=64):
    with FlopCounterMode(display=False) as counter:
        model.encode(torch.rand(1, 3, size, size))
    return counter.get_total_flops() / 2


@pytest.mark.parametrize("latent", [4, 8, 16, 32, 64])
def test_tinyvae_linskip_keeps_the_interface_within_twice_the_seed_encoder_flops(latent):
    torch.manual_seed(0)
    seed, variant = TinyVAE(latent).eval(), build_model("TinyVAELinSkip", latent).eval()
    x = torch.rand(2, 3, 64, 64)
    recon, mu, logvar = variant(x)
    assert recon.shape == x.shape and mu.shape == logvar.shape == (2, latent)
    assert 0 <= recon.min() and recon.max() <= 1
    assert torch.equal(variant(x)[0], recon)  # eval: z = mu, deterministic
    assert _encoder_macs(variant) <= 2 * _encoder_macs(seed)
    assert _encoder_macs(variant) == 394_240 + 11_264 * latent  # the formula in tinyvae_linskip.py's docstring
    n = sum(p.numel() for p in variant.parameters()) + variant.low_mean.numel()
    assert n == 31_073 + 12_290 * latent + 6_144 * latent + 3_072 + 3_072


def test_tinyvae_linskip_starts_at_the_pca_reconstruction():
    """After init_linear_path the untrained model reconstructs like PCA-L of the 32 px images, upsampled."""
    from sage_ros.compression.metrics import psnr_per_image
    torch.manual_seed(0)
    images = torch.from_numpy(synthetic_images(400, 64)).permute(0, 3, 1, 2).float() / 255
    model = TinyVAELinSkip(16).eval()
    model.init_linear_path(images[:300])
    held = images[300:]
    recon, mu, _ = model(held)
    pool = lambda a: torch.nn.functional.adaptive_avg_pool2d(a, 32).flatten(1)  # noqa: E731
    basis = torch.linalg.svd(pool(images[:300]) - model.low_mean, full_matrices=False)[2][:16]
    pca = (((pool(held) - model.low_mean) @ basis.T) @ basis + model.low_mean).view(-1, 3, 32, 32)
    pca_up = torch.nn.functional.interpolate(pca, scale_factor=2, mode="bilinear", align_corners=False).clamp(0, 1)
    assert torch.allclose(recon, pca_up, atol=1e-4)
    assert mu.std(0).mean().item() == pytest.approx(1.0, rel=0.5)  # whitened coefficients, as the prior expects
    assert psnr_per_image(held.double(), recon.double()).mean() > 15


def test_train_initialises_the_linear_path_from_training_images(tmp_path):
    torch.manual_seed(0)
    model = TinyVAELinSkip(4)
    train(model, TrainConfig(data="synthetic", steps=2, batch_size=8, progress_bar=False), tmp_path)
    assert model.low_mean.abs().sum() > 0 and model.lin_enc.weight.abs().sum() > 0
    # the linear path stays the PCA it was set to: training moves only the non-linear paths
    images = torch.from_numpy(synthetic_images(256, 64)).permute(0, 3, 1, 2).float() / 255
    reference = TinyVAELinSkip(4)
    reference.init_linear_path(images)
    trained = TinyVAELinSkip(4)
    trained.init_linear_path(images)
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    fit(trained, lambda m, x, s, t: gaussian_vae_loss(m(x), x, 0.001), synthetic_images(64, 64),
        TrainConfig(steps=3, batch_size=8, progress_bar=False), tmp_path / "fit")
    after = trained.state_dict()
    for name in ("lin_enc.weight", "lin_dec.weight", "lin_dec.bias", "low_mean"):
        assert torch.equal(before[name], after[name]), name
    assert not torch.equal(before["fc_mu.weight"], after["fc_mu.weight"])


def test_weight_ema_warms_up_instead_of_remembering_the_initial_weights():
    """After 50 updates toward 1.0 from 0.0, a fixed-0.999 EMA would still be at 1 - 0.999^50 = 0.05; the warmed-up
    decay tracks the weights early and reaches the full decay later (and leaves integer buffers integral)."""
    from sage_ros.compression.optim import ema_decay_at, make_ema

    assert ema_decay_at(0.999, 0) == pytest.approx(0.1) and ema_decay_at(0.999, 10**6) == 0.999
    assert ema_decay_at(0.999, 100) < ema_decay_at(0.999, 1000) < 0.999
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    ema = make_ema(net, 0.999)
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(1.0)
    for _ in range(50):
        ema.update_parameters(net)
    weight = ema.module[0].weight
    assert float(weight.min()) > 0.8, "the EMA still holds the initial weights"
    assert ema.module[1].num_batches_tracked.dtype == torch.int64


def test_sigma_image_gives_each_image_its_own_variance_and_favours_smooth_images():
    torch.manual_seed(0)
    x = torch.rand(3, 3, 8, 8)
    y = x.clone()
    y[0] += 0.3 * torch.randn(3, 8, 8)   # a badly reconstructed (textured) image
    y[1] += 0.01 * torch.randn(3, 8, 8)  # a nearly right (smooth) one
    y[2] += 0.1 * torch.randn(3, 8, 8)
    d = x[0].numel()
    per_image_mse = ((x - y) ** 2).flatten(1).mean(1)
    # the Gaussian NLL with sigma_i^2 = MSE_i, summed over pixels and averaged over the batch
    direct = torch.stack([(((x[i] - y[i]) ** 2) / (2 * per_image_mse[i]) + 0.5 * torch.log(per_image_mse[i])).sum()
                          for i in range(3)]).mean()
    assert sigma_vae_nll(y, x, per_image=True).item() == pytest.approx(direct.item(), rel=1e-5)
    loss, _ = gaussian_vae_loss((y, torch.zeros(3, 2), torch.zeros(3, 2)), x, 1.0, "sigma_image")
    assert loss.item() == pytest.approx(direct.item(), rel=1e-5)
    # the gradient per unit of error is 1 / MSE_i: the nearly right image pulls hardest, unlike a batch-wide sigma
    y.requires_grad_(True)
    sigma_vae_nll(y, x, per_image=True).backward()
    pull = (y.grad.flatten(1).norm(dim=1) / (y - x).detach().flatten(1).norm(dim=1))
    assert pull[1] > 50 * pull[0]
    y.grad = None
    sigma_vae_nll(y, x).backward()
    batch_pull = (y.grad.flatten(1).norm(dim=1) / (y - x).detach().flatten(1).norm(dim=1))
    assert batch_pull[1] == pytest.approx(batch_pull[0].item(), rel=1e-4)
    assert TrainConfig(recon="sigma_image").recon == "sigma_image"


def test_tinyvae32_linskip_keeps_tinyvae32s_interface_and_starts_at_pca_of_the_full_32px_image():
    from sage_ros.compression.metrics import psnr_per_image
    from sage_ros.models import TinyVAE32, TinyVAE32LinSkip
    torch.manual_seed(0)
    images = torch.from_numpy(synthetic_images(400, 32)).permute(0, 3, 1, 2).float() / 255
    base, model = TinyVAE32(16).eval(), build_model("TinyVAE32LinSkip", 16).eval()
    assert isinstance(model, TinyVAE32LinSkip) and isinstance(model, TinyVAE32)
    extra = sum(p.numel() for p in model.parameters()) + model.low_mean.numel() - sum(
        p.numel() for p in base.parameters())
    assert extra == 6_144 * 16 + 3_072 + 3_072  # the docstring's count
    model.init_linear_path(images[:300])
    held = images[300:]
    recon, mu, logvar = model(held)
    assert recon.shape == held.shape and mu.shape == logvar.shape == (100, 16)
    flat = held.flatten(1)
    basis = torch.linalg.svd(images[:300].flatten(1) - model.low_mean, full_matrices=False)[2][:16]
    pca = (((flat - model.low_mean) @ basis.T) @ basis + model.low_mean).clamp(0, 1).view_as(held)
    assert torch.allclose(recon, pca, atol=1e-4)  # no resampling: the linear path is at the input's own 32 px
    assert psnr_per_image(held.double(), recon.double()).mean() > 15


def test_puzzle_per_image_weighting_is_the_log_mse_gradient_at_the_plain_mse_scale():
    from sage_ros.compression.losses import puzzle_loss
    torch.manual_seed(0)
    x = torch.rand(3, 3, 8, 8) * 2 - 1
    y = x.clone()
    y[0] += 0.5 * torch.randn(3, 8, 8)
    y[1] += 0.05 * torch.randn(3, 8, 8)
    y[2] += 0.2 * torch.randn(3, 8, 8)
    z = torch.zeros(3, 4, 2, 2)
    plain, _ = puzzle_loss((y, z, z, None), x, 0.25)
    weighted, _ = puzzle_loss((y, z, z, None), x, 0.25, per_image=True)
    assert weighted.item() == pytest.approx(plain.item(), rel=1e-5)  # same value: weights x MSE_i average to it
    grads = []
    for per_image in (False, True):
        yy = y.clone().requires_grad_(True)
        puzzle_loss((yy, z, z, None), x, 0.25, per_image=per_image)[0].backward()
        grads.append(yy.grad.flatten(1).norm(dim=1) / (y - x).flatten(1).norm(dim=1))
    assert grads[0][1] == pytest.approx(grads[0][0].item(), rel=1e-4)  # plain MSE: one weight for all
    assert grads[1][1] > 50 * grads[1][0]  # weighted: the nearly right image pulls hardest
