"""Weight quantization of every Conv2d / ConvTranspose2d / Linear, torchao-style.

    model = quantize_(model, Int4Config(group_size=64, rounding="mse"))   # in place
    save_quantized(model, "model.int4.safetensors")                       # int8 / packed int4 + fp16 scales
    model2 = load_quantized("model.int4.safetensors")                     # rebuilt from the file alone

Schemes (all symmetric, so a zero weight stays exactly zero and no zero points are stored):
- INT8: one scale per output channel, q in [-127, 127].
- INT4: one scale per group of `group_size` consecutive weights along the input dimension of each output
  row, q in [-8, 7], packed two per byte (low nibble first). A row whose length is not a multiple of the
  group size gets a short last group (its scale is searched over the real weights only; the file stores
  fan_in weights per row, plus one zero nibble when fan_in is odd).
Scales are stored in fp16 and the weights are quantized *with the fp16 scale*, so the dequantized weights
in memory are bit-identical to the ones rebuilt from the file.

Rounding: "minmax" uses scale = max|w| / qmax; "mse" searches a grid of clip ratios per row (INT8) or per
group (INT4) and keeps the scale with the smallest squared weight error. The grid contains ratio 1.0, so
"mse" is never worse than "minmax" on weight error; the report carries both numbers. "gptq" (Linear layers,
needs calibration images; see gptq.py) minimises the layer's output error instead; the report adds the output
error of GPTQ and of "mse" rounding for those layers.

Int4Config(conv_scheme="int8") keeps Linear layers INT4 and gives convolutions INT8 (see Int4Config).

Every weight of a covered layer kind is quantized (none skipped); every other tensor (biases, norms,
codebooks, BatchNorm statistics) is kept in float32 and listed in the report as such.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from sage_ros.atomic import atomic_path

FORMAT = "sage_ros.quantized/1"
QUANTIZED_KINDS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
ROUNDINGS = ("minmax", "mse", "gptq")


class QuantizationError(ValueError):
    """Bad quantization config, or a file that is not a valid sage_ros quantized model."""


@dataclass(frozen=True)
class Int8Config:
    rounding: str = "minmax"
    clip_grid: int = 20  # number of clip ratios tried by "mse" in [clip_min, 1.0]
    clip_min: float = 0.5

    scheme = "int8"

    def __post_init__(self):
        _check_rounding(self)

    def for_module(self, module: nn.Module):
        return self


@dataclass(frozen=True)
class Int4Config:
    # 64: the smallest block TensorRT's INT4 weight-only MatMul accepts (64/128), and the same block is used
    # in the ONNX int4 graph, so the torch model and the shipped graph hold identical weights. Scale overhead
    # is 16 bits / 64 weights = 0.25 bit per weight (INT4 costs 4.25 bits, 7.5x below fp32).
    group_size: int = 64
    rounding: str = "mse"
    clip_grid: int = 20
    clip_min: float = 0.5
    # "int8": convolutions get INT8 per-channel instead (Linear layers stay INT4). Convolutions are ~3 % of
    # TinyVAE's weights but carry most of the INT4 error (checkerboard in the ConvTranspose decoder), and no
    # runtime has INT4 convolution kernels anyway, so this costs a few KB for most of the quality back.
    conv_scheme: str = "int4"

    scheme = "int4"

    def __post_init__(self):
        _check_rounding(self)
        if self.group_size < 2 or self.group_size % 2:
            raise QuantizationError(f"group_size must be an even number >= 2, got {self.group_size}")
        if self.conv_scheme not in ("int4", "int8"):
            raise QuantizationError(f"conv_scheme must be int4 or int8, got {self.conv_scheme!r}")

    def for_module(self, module: nn.Module):
        """The config a given layer gets: INT8 for convolutions when conv_scheme is "int8"."""
        if self.conv_scheme == "int8" and not isinstance(module, nn.Linear):
            return Int8Config(rounding=self.rounding, clip_grid=self.clip_grid, clip_min=self.clip_min)
        return self


def _check_rounding(cfg) -> None:
    if cfg.rounding not in ROUNDINGS:
        raise QuantizationError(f"rounding must be one of {ROUNDINGS}, got {cfg.rounding!r}")
    if cfg.clip_grid < 1 or not 0.0 < cfg.clip_min <= 1.0:
        raise QuantizationError("clip_grid must be >= 1 and clip_min in (0, 1]")


def config_from_dict(d: dict):
    d = dict(d)
    scheme = d.pop("scheme", None)
    cls = {"int8": Int8Config, "int4": Int4Config}.get(scheme)
    if cls is None:
        raise QuantizationError(f"unknown scheme {scheme!r}; expected int8 or int4")
    return cls(**d)


def config_to_dict(cfg) -> dict:
    return {"scheme": cfg.scheme, **asdict(cfg)}


# ---------------------------------------------------------------- weight <-> rows (out_channels x fan_in)

def weight_to_rows(module: nn.Module, weight: torch.Tensor) -> torch.Tensor:
    """View any covered weight as a 2-D matrix with one row per output channel.

    ConvTranspose2d stores (in, out/groups, kh, kw): its output channels are dim 1 (per group), so it is
    regrouped to (out, in/groups * kh * kw) before per-channel / per-group scaling.
    """
    if isinstance(module, nn.ConvTranspose2d):
        g = module.groups
        c_in, c_out_g = weight.shape[:2]
        w = weight.reshape(g, c_in // g, c_out_g, *weight.shape[2:]).transpose(1, 2)
        return w.reshape(g * c_out_g, -1)
    return weight.reshape(weight.shape[0], -1)


def rows_to_weight(module: nn.Module, rows: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Inverse of weight_to_rows."""
    if isinstance(module, nn.ConvTranspose2d):
        g = module.groups
        c_in, c_out_g = shape[:2]
        w = rows.reshape(g, c_out_g, c_in // g, *shape[2:]).transpose(1, 2)
        return w.reshape(shape)
    return rows.reshape(shape)


# ---------------------------------------------------------------- scale search

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


# ---------------------------------------------------------------- int4 packing

def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """int values in [-8, 7], last dim even -> uint8 with two weights per byte (element 2i in the low nibble)."""
    u = (q.to(torch.int16) & 0xF).to(torch.uint8)
    return u[..., 0::2] | (u[..., 1::2] << 4)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of pack_int4 -> int8 values in [-8, 7], last dim doubled."""
    lo = (packed & 0xF).to(torch.int8)
    hi = (packed >> 4).to(torch.int8)
    both = torch.stack([lo, hi], dim=-1).flatten(-2)
    return torch.where(both > 7, both - 16, both)


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


def dequantize_rows(q: torch.Tensor, scale: torch.Tensor, scheme: str, fan_in: int, group_size: int | None):
    if scheme == "int8":
        return q.float() * scale.float()
    n_out, n_groups = scale.shape
    values = unpack_int4(q).float()
    values = torch.nn.functional.pad(values, (0, n_groups * group_size - values.shape[1]))
    return (values.reshape(n_out, n_groups, group_size) * scale.float()[..., None]).reshape(n_out, -1)[:, :fan_in]


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
    from .gptq import gptq_rows, inverse_hessian_cholesky, output_error

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
        from .gptq import linear_hessians
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


# ---------------------------------------------------------------- storage

def _model_kwargs(model: nn.Module) -> dict:
    kwargs = {"latent_dim": int(model.latent_dim)}
    if hasattr(model, "num_codes"):
        kwargs["num_codes"] = int(model.num_codes)
    return kwargs


def save_quantized(model: nn.Module, path) -> Path:
    """Write a quantize_'d model as safetensors: `<name>.weight.q` (int8, or uint8 packed int4),
    `<name>.weight.scale` (fp16) per covered layer, every other state_dict tensor as is (float32);
    architecture, constructor kwargs, config and the per-tensor report in the metadata."""
    from safetensors.torch import save_file

    config = getattr(model, "quantization_config", None)
    if config is None:
        raise QuantizationError("model is not quantized; call quantize_(model, config) first")
    tensors, layout = {}, {}
    for name, module in model.named_modules():
        qinfo = getattr(module, "_sage_quant", None)
        if qinfo is None:
            continue
        tensors[f"{name}.weight.q"] = qinfo["q"].contiguous()
        tensors[f"{name}.weight.scale"] = qinfo["scale"].contiguous()
        layout[f"{name}.weight"] = {"shape": list(module.weight.shape), "fan_in": qinfo["fan_in"],
                                    "scheme": qinfo["scheme"]}
    for key, value in model.state_dict().items():
        if key not in layout:
            tensors[key] = value.detach().contiguous().clone()
    metadata = {
        "format": FORMAT,
        "architecture": type(model).__name__,
        "model_kwargs": json.dumps(_model_kwargs(model)),
        "config": json.dumps(config_to_dict(config)),
        "layout": json.dumps(layout),
        "report": json.dumps(model.quantization_report),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def read_metadata(path) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises several types for a bad header
        raise QuantizationError(f"{path}: not a readable safetensors file ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise QuantizationError(f"{path}: not a sage_ros quantized model (format {meta.get('format')!r})")
    return meta


def load_quantized(path) -> nn.Module:
    """Rebuild a working (eval-mode) model from a save_quantized file alone."""
    from safetensors.torch import load_file

    from sage_ros.models import ARCHITECTURES

    meta = read_metadata(path)
    arch = meta["architecture"]
    if arch not in ARCHITECTURES:
        raise QuantizationError(f"{path}: unknown architecture {arch!r}")
    config = config_from_dict(json.loads(meta["config"]))
    layout = json.loads(meta["layout"])
    model = ARCHITECTURES[arch](**json.loads(meta["model_kwargs"]))
    stored = load_file(str(path))
    modules = dict(model.named_modules())
    state = {}
    for wname, info in layout.items():
        module = modules[wname.rsplit(".", 1)[0]]
        q, scale = stored.pop(f"{wname}.q"), stored.pop(f"{wname}.scale")
        scheme = info.get("scheme", config.scheme)
        rows = dequantize_rows(q, scale, scheme, info["fan_in"], getattr(config, "group_size", None))
        state[wname] = rows_to_weight(module, rows, torch.Size(info["shape"]))
        module._sage_quant = {"q": q, "scale": scale, "fan_in": info["fan_in"], "scheme": scheme}
    state.update(stored)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise QuantizationError(f"{path}: tensors do not match {arch}: {exc}") from exc
    model.quantization_config = config
    model.quantization_report = json.loads(meta["report"])
    return model.eval()


def save_float(model: nn.Module, path) -> Path:
    """The FP32 reference file (same container, same metadata style) that compression ratios divide by."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    metadata = {"format": "sage_ros.float/1", "architecture": type(model).__name__,
                "model_kwargs": json.dumps(_model_kwargs(model))}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path
