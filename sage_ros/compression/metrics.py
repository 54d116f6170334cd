"""Image-quality and latent-drift metrics. Images are float tensors N x C x H x W in [0, 1].

SSIM follows Wang et al. (2004) exactly as skimage's `structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1)`: an 11 x 11 Gaussian window (sigma 1.5, radius 5), K1 = 0.01,
K2 = 0.03, statistics computed per channel over "valid" window positions only (skimage filters the whole
image and then crops 5 px from each border, which is the same thing), averaged over channels and pixels,
then over images. Written in torch (one grouped float32 conv2d) rather than calling skimage per image because
evaluation runs over thousands of images; test_evaluate_metrics checks the two agree to 1e-6.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape or a.dim() != 4:
        raise ValueError(f"expected two N x C x H x W tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def mse_per_image(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    _check_pair(a, b)
    return (a.double() - b.double()).pow(2).flatten(1).mean(dim=1)


def psnr_per_image(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """10 log10(range^2 / MSE) per image; an exact reconstruction is capped at 100 dB instead of inf."""
    mse = mse_per_image(a, b).clamp(min=data_range ** 2 * 1e-10)
    return 10.0 * torch.log10(data_range ** 2 / mse)


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> float:
    """Mean over images of the per-image PSNR (dB)."""
    return float(psnr_per_image(a, b, data_range).mean())


def _gaussian_1d(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-coords.pow(2) / (2 * sigma ** 2))
    return g / g.sum()


def ssim_per_image(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM per image (over channels and valid window positions)."""
    _check_pair(a, b)
    n, c, h, w = a.shape
    if min(h, w) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {h}x{w}")
    x, y = a.double(), b.double()
    # Filtering runs in float32 as one grouped conv (torch's float64 CPU convolutions are ~10x slower and
    # SSIM dominated evaluation time). Subtracting each image/channel's mean first keeps the E[x^2] - E[x]^2
    # cancellation small: agreement with skimage's float64 result stays below 1e-6 (tested).
    shift = (x.mean(dim=(2, 3), keepdim=True) + y.mean(dim=(2, 3), keepdim=True)) / 2
    xc, yc = (x - shift).float(), (y - shift).float()
    stack = torch.cat([xc, yc, xc * xc, yc * yc, xc * yc], dim=1)
    g = _gaussian_1d()
    window = torch.outer(g, g).float().to(a.device)[None, None].repeat(5 * c, 1, 1, 1)
    stack = F.conv2d(stack, window, groups=5 * c).double()  # valid positions only
    mu_x, mu_y, xx, yy, xy = stack.split(c, dim=1)
    var_x, var_y, cov = xx - mu_x ** 2, yy - mu_y ** 2, xy - mu_x * mu_y
    mu_x, mu_y = mu_x + shift, mu_y + shift
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(dim=1)


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> float:
    return float(ssim_per_image(a, b, data_range).mean())


def latent_drift(reference: torch.Tensor, candidate: torch.Tensor) -> dict:
    """Relative L2 (||c - r|| / ||r||) and cosine of latent vectors, per sample, averaged."""
    r, c = reference.double().flatten(1), candidate.double().flatten(1)
    rel = (c - r).norm(dim=1) / r.norm(dim=1).clamp(min=1e-12)
    cos = F.cosine_similarity(r, c, dim=1, eps=1e-12)
    return {"mu_rel_l2": float(rel.mean()), "mu_cosine": float(cos.mean())}


def psnr_from_mse(mse: float, data_range: float = 1.0) -> float:
    return 10.0 * math.log10(data_range ** 2 / max(mse, 1e-10 * data_range ** 2))
