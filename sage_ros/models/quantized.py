"""The quantized-weights file format: configs, INT4 packing, save_quantized / load_quantized.

A file written by save_quantized is a safetensors file: `<name>.weight.q` (int8, or uint8 packed int4),
`<name>.weight.scale` (fp16) per covered layer, every other state_dict tensor as is (float32); the architecture,
its constructor kwargs, the config and the per-tensor report in the metadata. load_quantized rebuilds a working
model from the file alone.

Schemes (all symmetric, so a zero weight stays exactly zero and no zero points are stored):
- INT8: one scale per output channel, q in [-127, 127].
- INT4: one scale per group of `group_size` consecutive weights along the input dimension of each output
  row, q in [-8, 7], packed two per byte (low nibble first). A row whose length is not a multiple of the
  group size gets a short last group (the file stores fan_in weights per row, plus one zero nibble when
  fan_in is odd).

This is the format only; choosing the weights (rounding, GPTQ) is sage_ros.compression.quantize. It lives
beside the model definitions so that the runtime's torch backend can load a quantized bundle without
importing the offline layer (docs/design.md, "Layers").
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from sage_ros.atomic import atomic_path

from . import ARCHITECTURES

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


# ---------------------------------------------------------------- dequantization

def dequantize_rows(q: torch.Tensor, scale: torch.Tensor, scheme: str, fan_in: int, group_size: int | None):
    if scheme == "int8":
        return q.float() * scale.float()
    n_out, n_groups = scale.shape
    values = unpack_int4(q).float()
    values = torch.nn.functional.pad(values, (0, n_groups * group_size - values.shape[1]))
    return (values.reshape(n_out, n_groups, group_size) * scale.float()[..., None]).reshape(n_out, -1)[:, :fan_in]



# ---------------------------------------------------------------- storage

def model_kwargs(model: nn.Module) -> dict:
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
        "model_kwargs": json.dumps(model_kwargs(model)),
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
                "model_kwargs": json.dumps(model_kwargs(model))}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path
