"""GPTQ-style error compensation for Linear layers (Frantar et al., 2022, "GPTQ: Accurate Post-Training
Quantization for Generative Pre-trained Transformers"), used by quantize_ when rounding="gptq".

Plain rounding minimises each weight's own error. GPTQ minimises the layer's *output* error on calibration
inputs X: columns are quantized left to right and each column's rounding error is spread over the columns not yet
quantized, weighted by the inverse Hessian H = 2 X^T X / n. Scales are chosen per group (INT4) or per row (INT8)
with the same MSE clip search as rounding="mse", from the weights as updated when the group is reached.
Only Linear layers get GPTQ (their inputs are plain vectors); convolutions fall back to rounding="mse".
The stored format is the same as for the other roundings (int values + fp16 scales).

Written by hand because no installed library does GPTQ on arbitrary torch modules (onnxruntime's GPTQ
works on ONNX MatMuls only); it follows the reference implementation's lazy-batch update.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .rounding import search_scales

DAMP = 0.01  # fraction of mean(diag(H)) added to the diagonal: keeps the Cholesky factorisation stable


@torch.no_grad()
def linear_hessians(model: nn.Module, calibration: torch.Tensor, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """H = 2 X^T X / n (float64) for every nn.Linear, X = its inputs when the float model (eval mode) runs
    the calibration batch through encode and decode(mu) — exactly model(x) in eval mode."""
    linears = {m: name for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    sums = {name: torch.zeros(m.in_features, m.in_features, dtype=torch.float64) for m, name in linears.items()}
    counts = dict.fromkeys(sums, 0)

    def hook(module, inputs, _output):
        x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).double()
        sums[linears[module]] += x.T @ x
        counts[linears[module]] += x.shape[0]

    handles = [m.register_forward_hook(hook) for m in linears]
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(calibration), batch_size):
            model(calibration[start:start + batch_size])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {name: 2.0 * sums[name] / max(counts[name], 1) for name in sums}


def inverse_hessian_cholesky(h: torch.Tensor) -> torch.Tensor:
    """Upper Cholesky factor of H^-1 (dead inputs set to 1 on the diagonal, damped), as GPTQ uses it.
    O(in^3): for TinyVAE's 4096-input fc_mu / fc_logvar (which share one H) this is most of GPTQ's time."""
    h = h.double().clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    h += DAMP * torch.mean(torch.diag(h)) * torch.eye(len(h), dtype=h.dtype)
    return torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)


@torch.no_grad()
def gptq_rows(rows: torch.Tensor, hessian: torch.Tensor, cfg, hinv: torch.Tensor | None = None) -> dict:
    """GPTQ-quantize a Linear weight (out x in). Returns {"values": int (out x in), "scale": fp32 (out x groups,
    fp16-representable), "deq": the dequantized weight}. `hinv`: inverse_hessian_cholesky(hessian), if known."""
    w = rows.detach().double().clone()
    w[:, torch.diag(hessian) == 0] = 0.0  # inputs that never fire: their weights cannot matter
    n_out, fan_in = w.shape
    qmin, qmax = (-8, 7) if cfg.scheme == "int4" else (-127, 127)
    group = cfg.group_size if cfg.scheme == "int4" else fan_in
    block = group if cfg.scheme == "int4" else min(128, fan_in)  # lazy-update block; int4: one group
    hinv = inverse_hessian_cholesky(hessian) if hinv is None else hinv
    values = torch.zeros_like(w)
    scales = torch.zeros(n_out, math.ceil(fan_in / group), dtype=torch.float64)
    mse_cfg = type(cfg)(**{**{k: getattr(cfg, k) for k in cfg.__dataclass_fields__}, "rounding": "mse"})
    for b0 in range(0, fan_in, block):
        b1 = min(b0 + block, fan_in)
        if b0 % group == 0:  # a new group starts: its scale from the weights as updated so far
            scale, _ = search_scales(w[:, b0:b0 + group].float(), qmin, qmax, mse_cfg)
            scales[:, b0 // group] = scale[:, 0].double()
        s = scales[:, b0 // group]
        w1, err1, hinv1 = w[:, b0:b1].clone(), torch.zeros(n_out, b1 - b0, dtype=torch.float64), hinv[b0:b1, b0:b1]
        for i in range(b1 - b0):
            col = w1[:, i]
            q = torch.clamp(torch.round(col / s), qmin, qmax)
            values[:, b0 + i] = q
            err = (col - q * s) / hinv1[i, i]
            w1[:, i:] -= err[:, None] * hinv1[i, i:][None, :]
            err1[:, i] = err
        w[:, b1:] -= err1 @ hinv[b0:b1, b1:]
    scale_full = torch.repeat_interleave(scales, group, dim=1)[:, :fan_in]
    return {"values": values, "scale": scales.float(), "deq": (values * scale_full).float()}


def output_error(rows: torch.Tensor, deq: torch.Tensor, hessian: torch.Tensor) -> float:
    """Mean squared output error per output and sample, tr(dW H dW^T) / (2 * out): what GPTQ minimises."""
    d = (deq.double() - rows.double())
    return float(torch.einsum("oi,ij,oj->", d, hessian.double(), d) / (2 * d.shape[0]))
