"""Held-out reconstruction of a model under training: the final test metrics and the curve's points.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from . import metrics
from .checkpoints import architecture_of
from .datasets import to_model_input, to_unit_range
from .distributed import eval_device
from .train_config import TrainConfig


ACTIVE_KL_NATS = 0.01  # a latent dim is "active" when its mean KL over held-out images exceeds this (Burda et al.)


@torch.no_grad()
def evaluate_reconstruction(model: nn.Module, images_uint8, batch_size: int = 256,
                            device: str | torch.device = "cpu") -> dict:
    """Held-out reconstruction on the deterministic path (eval mode, z = mu / nearest codes), in [0, 1].

    Same definitions as evaluate.evaluate_pair (metrics.py): mse and psnr are means of per-image values,
    ssim uses a Gaussian window 11, sigma 1.5 (Wang et al.). VQ models also get code usage (distinct codes
    over the split, and the perplexity of the code histogram: 10 = all codes equally used).
    """
    model.eval().to(device)
    images = torch.as_tensor(np.asarray(images_uint8))
    mse, psnr, ssim, code_counts, kl_dims = [], [], [], None, []
    gaussian = architecture_of(model) != "VisionPuzzleVAE"
    for i in range(0, len(images), batch_size):
        x = to_model_input(images[i:i + batch_size].to(device), model.input_range)
        out = model(x)
        if gaussian:  # per-dim KL(q(z|x) || N(0, 1)): which latent dims carry information
            mu, logvar = out[1], out[2]
            kl_dims.append((-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(0).cpu())
        y, x01 = to_unit_range(out[0], model.input_range), to_unit_range(x, model.input_range)
        mse.append(metrics.mse_per_image(x01, y).cpu())
        psnr.append(metrics.psnr_per_image(x01, y).cpu())
        ssim.append(metrics.ssim_per_image(x01, y).cpu())
        if architecture_of(model) == "VisionPuzzleVAE":
            counts = torch.bincount(out[3].flatten().cpu(), minlength=model.num_codes)
            code_counts = counts if code_counts is None else code_counts + counts
    result = {"images": len(images), **{k: float(torch.cat(v).mean()) for k, v in
                                        (("mse", mse), ("psnr", psnr), ("ssim", ssim))}}
    if gaussian:
        kl_per_dim = torch.stack(kl_dims).sum(0) / len(images)
        result["kl"] = float(kl_per_dim.sum())
        result["active_dims"] = int((kl_per_dim > ACTIVE_KL_NATS).sum())
    if code_counts is not None:
        p = code_counts.double() / code_counts.sum()
        result["codes_used"] = int((code_counts > 0).sum())
        result["code_perplexity"] = float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))
    return result


def held_out_curve(images_uint8, cfg: TrainConfig, train_probe=None) -> Callable[[nn.Module], dict]:
    """curve(model) -> {"val_psnr", "val_ssim", "val_mse", ...} on a fixed held-out sample (and "train_psnr"
    on a fixed sample of training inputs when `train_probe` is given and `train_side`: the gap shows
    memorisation)."""
    device = eval_device(cfg)

    def curve(model: nn.Module, train_side: bool = True) -> dict:
        held = evaluate_reconstruction(model, images_uint8, cfg.eval_batch_size, device)
        point = {f"val_{k}": v for k, v in held.items() if k != "images"}
        if train_probe is not None and train_side:
            point["train_psnr"] = evaluate_reconstruction(model, train_probe, cfg.eval_batch_size, device)["psnr"]
        return point
    return curve
