"""Codebook training for VisionPuzzleVAE: k-means initialisation, EMA updates, dead-code restarts, diagnostics.

    from sage_ros.compression.vq import CodebookTrainer
    trainer = CodebookTrainer(model, decay=0.99, restart_below=0.03)
    trainer.init_kmeans(model, x)                  # codebook <- k-means of the encoder outputs of a batch
    recon, z_e, z_q, codes = model(x)
    loss = F.mse_loss(recon, x) + beta * F.mse_loss(z_e, z_q.detach())
    trainer.update(model, z_e, codes)              # EMA k-means step + restarts (no gradient to the codebook)

Why: a 10-entry codebook trained by gradient (van den Oord's codebook loss) collapses easily: a code that wins no
cell gets no gradient and stays dead. Three standard fixes, each measurable alone:
- init from data: Lloyd k-means (k-means++ seeding) on the encoder outputs of the first batch, so every code
  starts inside the data;
- EMA codebook (VQ-VAE-2 / Razavi et al.): each code tracks the decayed running mean of the encoder outputs
  assigned to it (counts Laplace-smoothed), which is an online k-means step and needs no codebook loss;
- dead-code restarts (Dhariwal et al., Jukebox): a code whose decayed usage falls below `restart_below` of its fair
  share (1 / K) is moved onto an encoder output of the current batch, picked with probability proportional to
  its squared distance from its own code (k-means++ style: it splits the worst-served cluster).

The EMA state (counts and sums) lives here, not in the model, so the model's parameters and state_dict stay
exactly the architecture's (332,099 + 267 * L). On resume it restarts from the checkpointed codebook with
uniform counts; with decay 0.99 it is back to steady state within a few hundred steps.
All functions are single-process (under DDP each rank would update its own copy: not supported here).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def kmeans(points, k: int, iterations: int = 50, seed: int = 0) -> torch.Tensor:
    """Lloyd's k-means with k-means++ seeding (seeded, deterministic); returns k x D float32 centres.
    An empty cluster is re-seeded at the point farthest from its centre."""
    x = torch.as_tensor(np.asarray(points) if not torch.is_tensor(points) else points).float().cpu()
    if len(x) < k:
        raise ValueError(f"k-means needs at least {k} points, got {len(x)}")
    gen = torch.Generator().manual_seed(seed)
    centres = x[torch.randint(len(x), (1,), generator=gen)]
    for _ in range(1, k):
        d2 = torch.cdist(x, centres).pow(2).min(dim=1).values
        pick = torch.multinomial(d2 / d2.sum(), 1, generator=gen) if d2.sum() > 0 else \
            torch.randint(len(x), (1,), generator=gen)
        centres = torch.cat([centres, x[pick]])
    for _ in range(iterations):
        dist = torch.cdist(x, centres)
        assign = dist.argmin(dim=1)
        new = torch.zeros_like(centres).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).float()
        for j in torch.nonzero(counts == 0).flatten().tolist():
            far = int(dist.min(dim=1).values.argmax())
            new[j], counts[j] = x[far], 1.0
        new = new / counts[:, None]
        done = torch.allclose(new, centres, atol=1e-7)
        centres = new
        if done:
            break
    return centres


def flat_latents(z_e: torch.Tensor) -> torch.Tensor:
    """N x L x H x W -> (N*H*W) x L, in the cell order of quantize()'s codes."""
    return z_e.permute(0, 2, 3, 1).reshape(-1, z_e.shape[1])


class CodebookTrainer:
    """EMA codebook updates (decay > 0) and/or dead-code restarts (restart_below > 0) for a VQ model."""

    def __init__(self, model: nn.Module, decay: float = 0.99, restart_below: float = 0.03, eps: float = 1e-5,
                 seed: int = 0):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        if restart_below < 0:
            raise ValueError(f"restart_below must be >= 0, got {restart_below}")
        self.decay, self.restart_below, self.eps = decay, restart_below, eps
        self.gen = torch.Generator().manual_seed(seed)
        self.restarts = 0
        self.usage = None   # decayed per-batch cell counts per code (also kept without EMA, for restarts)
        self.sums = None
        self.sync(model)

    @property
    def ema(self) -> bool:
        return self.decay > 0

    @torch.no_grad()
    def sync(self, model: nn.Module) -> None:
        """(Re)start the running statistics from the model's current codebook (fresh start, resume, k-means)."""
        # statistics restart from the codebook at the next update (fair-share counts: the batch's cell count is
        # known only then), so a resumed run starts from the checkpoint's codebook, not the one seen here
        self.usage = self.sums = None
        if self.ema:  # the EMA is the only writer: the optimizer must not move (or weight-decay) the codebook
            model.codebook.weight.requires_grad_(False)

    @torch.no_grad()
    def init_kmeans(self, model: nn.Module, x: torch.Tensor, seed: int = 0, iterations: int = 50) -> None:
        """Codebook <- k-means centres of the encoder outputs of `x` (model run in eval mode)."""
        was_training = model.training
        model.eval()
        z = flat_latents(model.encode_continuous(x))
        model.train(was_training)
        model.codebook.weight.copy_(kmeans(z, model.num_codes, iterations, seed).to(z.device))
        self.sync(model)

    @torch.no_grad()
    def update(self, model: nn.Module, z_e: torch.Tensor, codes: torch.Tensor) -> dict:
        """One training step's codebook bookkeeping; returns {"perplexity", "used", "restarted"} of the batch."""
        flat = flat_latents(z_e.detach()).float()
        codes = codes.reshape(-1)
        k = model.num_codes
        counts = torch.bincount(codes, minlength=k).to(flat.dtype)
        if self.usage is None:
            self.usage = torch.full((k,), len(codes) / k, dtype=flat.dtype, device=flat.device)
            self.sums = model.codebook.weight.detach().to(flat) * self.usage[:, None]
        d = self.decay if self.ema else 0.99  # usage is tracked for restarts even with a gradient codebook
        self.usage.mul_(d).add_(counts, alpha=1 - d)
        if self.ema:
            sums = torch.zeros_like(self.sums).index_add_(0, codes, flat)
            self.sums.mul_(self.decay).add_(sums, alpha=1 - self.decay)
            n = self.usage.sum()
            smoothed = (self.usage + self.eps) / (n + k * self.eps) * n
            model.codebook.weight.copy_(self.sums / smoothed[:, None])
        restarted = 0
        if self.restart_below > 0:
            dead = torch.nonzero(self.usage < self.restart_below * len(codes) / k).flatten()
            if len(dead):
                err = (flat - model.codebook.weight[codes]).pow(2).sum(1)
                pick = torch.multinomial((err + 1e-12).cpu(), len(dead), replacement=False, generator=self.gen)
                new = flat[pick.to(flat.device)]
                model.codebook.weight[dead] = new
                fair = len(codes) / k
                self.usage[dead] = fair
                self.sums[dead] = new * fair
                restarted = len(dead)
                self.restarts += restarted
        p = counts / counts.sum()
        p = p[p > 0]
        return {"perplexity": float(torch.exp(-(p * p.log()).sum())), "used": int((counts > 0).sum()),
                "restarted": restarted}


def commitment_loss(z_e: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
    """||z_e - sg(z_q)||^2 (mean): what the encoder pays for straying from its code (EMA mode's only VQ term)."""
    return F.mse_loss(z_e, z_q.detach())


# ---------------------------------------------------------------- diagnostics

@torch.no_grad()
def code_statistics(model: nn.Module, images_uint8, batch_size: int = 32) -> dict:
    """Codes of a VQ model over held-out images: usage, perplexity, and per-code pixel statistics.

    For each code: share of the cells, mean and std of the input's cell colour (RGB in [0, 1], the 224 px input
    area-averaged onto the 30 x 30 grid, i.e. the 7.5 x 7.5 px patch the cell covers) over the cells that got the
    code, and the mean colour the decoder paints for a grid of that code alone. A code whose input colours
    spread widely (large std) or whose decoded colour sits far from its inputs' mean is doing more than
    colour quantisation (texture, edges) or is poorly fitted.
    """
    from .datasets import to_model_input

    was_training = model.training
    model.eval()
    k, grid = model.num_codes, None
    counts = torch.zeros(k, dtype=torch.float64)
    colour_sum, colour_sq = torch.zeros(k, 3, dtype=torch.float64), torch.zeros(k, 3, dtype=torch.float64)
    images = torch.as_tensor(np.asarray(images_uint8))
    for i in range(0, len(images), batch_size):
        x = to_model_input(images[i:i + batch_size], model.input_range)
        codes = model.encode(x)
        grid = codes.shape[-1]
        cells = F.adaptive_avg_pool2d((x + 1) / 2 if tuple(model.input_range) == (-1.0, 1.0) else x, grid)
        cells = cells.permute(0, 2, 3, 1).reshape(-1, 3).double()
        flat = codes.reshape(-1)
        counts += torch.bincount(flat, minlength=k).double()
        colour_sum.index_add_(0, flat, cells)
        colour_sq.index_add_(0, flat, cells * cells)
    decoded = model.decode(torch.arange(k).view(k, 1, 1).expand(k, grid, grid).contiguous())
    lo, hi = model.input_range
    decoded = ((decoded - lo) / (hi - lo)).clamp(0, 1).mean(dim=(2, 3)).double()
    model.train(was_training)
    safe = counts.clamp_min(1)[:, None]
    mean = colour_sum / safe
    std = (colour_sq / safe - mean * mean).clamp_min(0).sqrt()
    p = counts / counts.sum()
    nz = p[p > 0]
    per_code = [{"code": j, "share": float(p[j]), "cells": int(counts[j]),
                 "input_rgb_mean": [round(float(v), 4) for v in mean[j]],
                 "input_rgb_std": [round(float(v), 4) for v in std[j]],
                 "decoded_rgb": [round(float(v), 4) for v in decoded[j]]} for j in range(k)]
    return {"images": int(len(images)), "codes_used": int((counts > 0).sum()),
            "code_perplexity": float(torch.exp(-(nz * nz.log()).sum())), "per_code": per_code}


def straight_through_softmax(model: nn.Module, x: torch.Tensor, temperature: float):
    """Forward of a VQ model whose decoder sees the HARD codes (as at run time) while gradients reach the encoder
    and the codebook through a softmax over negative squared code distances (straight-through softmax):
    z = z_q + (z_soft - sg(z_soft)), z_soft = sum_k softmax(-d_k / tau)_k c_k, tau = temperature x the batch's mean
    squared distance (scale-free). Plain STE copies dL/dz_q onto z_e, which says nothing about WHICH code would
    have been better; here the assignment probabilities get that gradient. Returns (recon, z_e, z_q, codes)."""
    z_e = model.encode_continuous(x)
    flat = flat_latents(z_e)
    weight = model.codebook.weight
    d2 = model.code_distances(flat)
    codes = d2.argmin(dim=1)
    tau = temperature * d2.detach().mean().clamp_min(1e-8)
    z_soft = torch.softmax(-d2 / tau, dim=1) @ weight
    z_hard = weight[codes]
    z = z_hard + (z_soft - z_soft.detach())
    n, _, h, w = z_e.shape
    to_map = lambda t: t.view(n, h, w, -1).permute(0, 3, 1, 2)  # noqa: E731
    return model.decode(to_map(z)), z_e, to_map(z_hard), codes.view(n, h, w)
