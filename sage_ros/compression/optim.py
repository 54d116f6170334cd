"""The optimizer side of a training run: AdamW with decay on matrices only, warm-up + cosine schedule, and an
exponential moving average of the weights (kept only when it beats the raw weights on held-out data).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .train_config import TrainConfig


def lr_lambda(cfg: TrainConfig, total: int) -> Callable[[int], float]:
    warmup = min(cfg.warmup_steps, total // 5)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor


def make_optimizer(module: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    params = [p for p in module.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]  # biases and norm scales: decaying them only hurts
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)


def make_ema(module: nn.Module, decay: float):
    """torch's own AveragedModel with an EMA average whose decay warms up (ema_decay_at); buffers such as
    BatchNorm statistics are averaged too."""
    if decay <= 0:
        return None
    from torch.optim.swa_utils import AveragedModel
    return AveragedModel(module, multi_avg_fn=_warmup_ema_multi_avg_fn(decay), use_buffers=True)


def ema_decay_at(decay: float, updates: int) -> float:
    """EMA decay after `updates` averaging steps: min(decay, (1 + n) / (10 + n)) (TensorFlow's
    ExponentialMovingAverage num_updates rule). Why: with a fixed 0.999 the initial random weights still hold
    0.999^1000 = 37 % of the average after 1,000 steps, so an EMA run's held-out curve read ~10 dB below its raw
    weights for the first few thousand steps (measured on the StandardVAE teacher and the TinyVAE32 students)."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


def _warmup_ema_multi_avg_fn(decay: float):
    """torch's own EMA update (get_ema_multi_avg_fn, which takes a fixed decay) at the decay of ema_decay_at."""
    from torch.optim.swa_utils import get_ema_multi_avg_fn

    def ema_update(ema_params, current_params, num_averaged) -> None:
        get_ema_multi_avg_fn(ema_decay_at(decay, int(num_averaged)))(ema_params, current_params, num_averaged)
    return ema_update


def ema_pays(points: list[dict]) -> bool:
    """Keep the EMA weights only if they beat the raw weights on the held-out (val) curve's last point; without
    a curve there is no evidence either way and the EMA (the usual choice) is kept."""
    if not points or "val_psnr_raw" not in points[-1]:
        return True
    return points[-1]["val_psnr"] >= points[-1]["val_psnr_raw"]
