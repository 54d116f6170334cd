"""Weight quantization of every Conv2d / ConvTranspose2d / Linear, torchao-style.

    model = quantize_(model, Int4Config(group_size=64, rounding="mse"))   # in place
    save_quantized(model, "model.int4.safetensors")                       # int8 / packed int4 + fp16 scales
    model2 = load_quantized("model.int4.safetensors")                     # rebuilt from the file alone

The file format (schemes, INT4 packing, save_quantized / load_quantized) is sage_ros.models.quantized, re-exported
here so that quantize_ and its file functions come from one import. Scales are stored in fp16 and the weights are
quantized *with the fp16 scale*, so the dequantized weights in memory are bit-identical to the ones rebuilt from
the file. An INT4 row whose length is not a multiple of the group size gets a short last group whose scale is
searched over the real weights only.

Rounding (rounding.py): "minmax" uses scale = max|w| / qmax; "mse" searches a grid of clip ratios per row (INT8)
or per group (INT4) and keeps the scale with the smallest squared weight error. The grid contains ratio 1.0, so
"mse" is never worse than "minmax" on weight error; the report carries both numbers. "gptq" (Linear layers,
needs calibration images; see gptq.py) minimises the layer's output error instead; the report adds the output
error of GPTQ and of "mse" rounding for those layers.

Int4Config(conv_scheme="int8") keeps Linear layers INT4 and gives convolutions INT8 (see Int4Config).

Every weight of a covered layer kind is quantized (none skipped); every other tensor (biases, norms,
codebooks, BatchNorm statistics) is kept in float32 and listed in the report as such.
"""
from __future__ import annotations

import math
from dataclasses import asdict

import torch
from torch import nn

# the file format, re-exported: callers write `from sage_ros.compression.quantize import quantize_, save_quantized`
from sage_ros.models.quantized import (FORMAT, QUANTIZED_KINDS, ROUNDINGS, Int4Config, Int8Config,  # noqa: F401
                                       QuantizationError, config_from_dict, config_to_dict, dequantize_rows,
                                       load_quantized, pack_int4, read_metadata, rows_to_weight, save_float,
                                       save_quantized, unpack_int4, weight_to_rows)

from .gptq import gptq_rows, inverse_hessian_cholesky, linear_hessians, output_error
from .rounding import search_scales


# ---------------------------------------------------------------- per-tensor quantization

def quantize_rows(rows: torch.Tensor, cfg) -> dict:
    """Quantize a (out x fan_in) fp32 matrix. Returns the stored tensors and the dequantized rows."""
    rows = rows.detach().float()
    n_out, fan_in = rows.shape
    if cfg.scheme == "int8":
        scale, q = search_scales(rows, -127, 127, cfg)
        return {"q": q.to(torch.int8), "scale": scale.half(), "deq": q * scale}
    gs = cfg.group_size
    n_groups = math.ceil(fan_in / gs)
    padded = torch.nn.functional.pad(rows, (0, n_groups * gs - fan_in))
    scale, q = search_scales(padded.reshape(-1, gs), -8, 7, cfg)
    deq = (q * scale).reshape(n_out, -1)[:, :fan_in]
    # store only the real weights (+1 zero nibble if fan_in is odd), not the padding of the last group
    q_stored = q.reshape(n_out, -1)[:, :fan_in + fan_in % 2]
    return {"q": pack_int4(q_stored), "scale": scale.reshape(n_out, n_groups).half(), "deq": deq}


def _tensor_report(name, module, weight, stored, cfg, minmax_mse) -> dict:
    deq_w = stored["deq"]
    rows = weight_to_rows(module, weight.detach().float())
    mse = (deq_w - rows).pow(2).mean().item()
    float_bytes = weight.numel() * 4
    quant_bytes = stored["q"].numel() * stored["q"].element_size() + stored["scale"].numel() * 2
    return {
        "tensor": f"{name}.weight", "module": type(module).__name__, "shape": list(weight.shape),
        "scheme": cfg.scheme, "group_size": getattr(cfg, "group_size", None), "rounding": cfg.rounding,
        "float32_bytes": float_bytes, "quantized_bytes": quant_bytes,
        "weight_mse": mse, "weight_mse_minmax": minmax_mse,
        "weight_rel_l2": math.sqrt((deq_w - rows).pow(2).sum().item() / max(rows.pow(2).sum().item(), 1e-30)),
    }


def _with_rounding(cfg, rounding: str):
    return type(cfg)(**{**asdict(cfg), "rounding": rounding})


def _gptq_stored(rows: torch.Tensor, hessian: torch.Tensor, cfg, hinv_cache: list) -> dict:
    """GPTQ for one Linear weight, in the same stored form as quantize_rows, plus output errors vs mse."""
    # layers fed the same input (fc_mu and fc_logvar) share H: factorise it once
    hinv = next((hi for h, hi in hinv_cache if h.shape == hessian.shape and torch.equal(h, hessian)), None)
    if hinv is None:
        hinv = inverse_hessian_cholesky(hessian)
        hinv_cache.append((hessian, hinv))
    result = gptq_rows(rows, hessian, cfg, hinv)
    values, fan_in = result["values"], rows.shape[1]
    if cfg.scheme == "int8":
        q = values.to(torch.int8)
    else:
        q = pack_int4(torch.nn.functional.pad(values, (0, fan_in % 2)).to(torch.int8))
    rtn = quantize_rows(rows, _with_rounding(cfg, "mse"))
    return {"q": q, "scale": result["scale"].half(), "deq": result["deq"],
            "output_mse": output_error(rows, result["deq"], hessian),
            "output_mse_rounding_mse": output_error(rows, rtn["deq"], hessian)}


def quantize_(model: nn.Module, config, calibration: torch.Tensor | None = None) -> nn.Module:
    """Quantize `model` in place: each covered weight becomes its dequantized value (so the model runs as
    before, with quantization error), the int8 / packed int4 tensors + fp16 scales stay attached for
    save_quantized, and `model.quantization_report` lists every tensor (quantized or kept float).

    rounding="gptq" needs `calibration` (float N x C x H x W in the model's input range): Linear layers get
    GPTQ error compensation from their inputs on it (float model's activations), other layers rounding="mse".
    """
    if getattr(model, "quantization_config", None) is not None:
        raise QuantizationError("model is already quantized; quantize a fresh float copy")
    hessians, hinv_cache = {}, []
    if config.rounding == "gptq":
        if calibration is None:
            raise QuantizationError('rounding="gptq" needs calibration images (quantize_(..., calibration=x))')
        hessians = linear_hessians(model, calibration)
    tensors = []
    for name, module in model.named_modules():
        if not isinstance(module, QUANTIZED_KINDS):
            continue
        weight = module.weight
        layer_cfg = config.for_module(module)
        if layer_cfg.rounding == "gptq" and name not in hessians:
            layer_cfg = _with_rounding(layer_cfg, "mse")  # convolutions: no GPTQ here
        rows = weight_to_rows(module, weight.detach().float())
        if layer_cfg.rounding == "gptq":
            stored = _gptq_stored(rows, hessians[name], layer_cfg, hinv_cache)
        else:
            stored = quantize_rows(rows, layer_cfg)
        minmax_mse = stored_mse = (stored["deq"] - rows).pow(2).mean().item()
        if layer_cfg.rounding != "minmax":  # the same tensor with plain min/max, to show what rounding bought
            plain = quantize_rows(rows, _with_rounding(layer_cfg, "minmax"))
            minmax_mse = (plain["deq"] - rows).pow(2).mean().item()
        tensors.append(_tensor_report(name, module, weight, stored, layer_cfg, minmax_mse))
        if "output_mse" in stored:
            tensors[-1].update(output_mse=stored["output_mse"],
                               output_mse_rounding_mse=stored["output_mse_rounding_mse"])
        # the clip grid contains ratio 1.0, so "mse" is never worse than min/max on weight error; GPTQ trades
        # weight error for output error and is exempt
        assert layer_cfg.rounding == "gptq" or stored_mse <= minmax_mse * (1 + 1e-6) + 1e-30
        with torch.no_grad():
            weight.copy_(rows_to_weight(module, stored["deq"], weight.shape).to(weight.dtype))
        module._sage_quant = {"q": stored["q"], "scale": stored["scale"], "fan_in": rows.shape[1],
                              "scheme": layer_cfg.scheme}
    if not tensors:
        raise QuantizationError(f"{type(model).__name__} has no Conv2d / ConvTranspose2d / Linear to quantize")
    model.quantization_config = config
    model.quantization_report = _model_report(model, tensors, config)
    return model


def _model_report(model: nn.Module, tensors: list[dict], config) -> dict:
    quantized = {t["tensor"] for t in tensors}
    kept = [{"tensor": k, "shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", ""),
             "bytes": v.numel() * (4 if v.is_floating_point() else v.element_size())}
            for k, v in model.state_dict().items() if k not in quantized]
    n_q = sum(math.prod(t["shape"]) for t in tensors)
    weighted = lambda key: sum(t[key] * math.prod(t["shape"]) for t in tensors) / n_q  # noqa: E731
    return {
        "config": config_to_dict(config),
        "tensors": tensors,
        "kept_float": kept,
        "quantized_params": n_q,
        "float_params": sum(math.prod(k["shape"]) for k in kept if k["dtype"].startswith("float")),
        "weight_mse": weighted("weight_mse"),
        "weight_mse_minmax": weighted("weight_mse_minmax"),
    }


