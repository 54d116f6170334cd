"""The rounding-scale search shared by round-to-nearest quantization (quantize.py) and GPTQ (gptq.py).

"minmax" uses scale = max|w| / qmax; "mse" searches a grid of clip ratios per row (INT8) or per group (INT4) and
keeps the scale with the smallest squared weight error. Scales are rounded to fp16 (what the file stores) before
the weights are quantized with them.
"""
from __future__ import annotations

import torch


def _fp16_scale(amax: torch.Tensor, qmax: int) -> torch.Tensor:
    """Scale rounded to fp16 (what is stored); all-zero groups get scale 1 so q = 0 without 0/0."""
    scale = (amax / qmax).clamp(min=2.0 ** -24)
    scale = torch.where(amax > 0, scale, torch.ones_like(scale))
    return scale.half().float().clamp(min=2.0 ** -24)


def _quantize_groups(w: torch.Tensor, scale: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    return torch.clamp(torch.round(w / scale), qmin, qmax)


def search_scales(groups: torch.Tensor, qmin: int, qmax: int, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-group scale for `groups` (G x n). Returns (scale G x 1 fp32 holding fp16 values, q G x n)."""
    amax = groups.abs().amax(dim=1, keepdim=True)
    ratios = [1.0] if cfg.rounding == "minmax" else torch.linspace(cfg.clip_min, 1.0, cfg.clip_grid + 1).tolist()
    best_scale, best_err = None, None
    for ratio in ratios:  # a loop over ratios, not a (ratios x weights) tensor, keeps memory at O(weights)
        scale = _fp16_scale(amax * ratio, qmax)
        err = (_quantize_groups(groups, scale, qmin, qmax) * scale - groups).pow(2).sum(dim=1, keepdim=True)
        if best_err is None:
            best_scale, best_err = scale, err
        else:
            better = err < best_err
            best_scale = torch.where(better, scale, best_scale)
            best_err = torch.where(better, err, best_err)
    return best_scale, _quantize_groups(groups, best_scale, qmin, qmax)
