"""Write a model bundle: encoder.onnx + decoder.onnx + model.safetensors + bundle.json (docs/design.md "Model bundle").

Choices (documented in docs/runtime.md):
- ONNX via the TorchScript exporter (`torch.onnx.export(..., dynamo=False)`) at an explicit opset (17 by default):
  it writes ONE self-contained file at the opset asked for, in ~0.1 s. The dynamo exporter of torch 2.13 only
  implements opset >= 18 and converts down afterwards (3 s, and the down-conversion may silently keep 18).
- Batch axis dynamic (`N`); height/width fixed by the architecture.
- nn.Linear is exported as MatMul + Add, not Gemm, so weight-only INT4 quantizers (onnxruntime MatMulNBits,
  TensorRT INT4 weight-only GEMM) can take the Linear layers, which hold ~97 % of TinyVAE's parameters.
- fp16: weights and compute in float16, graph inputs/outputs kept float32 (onnxruntime's float16 converter with
  keep_io_types=True), so every consumer feeds and reads float32 whatever the precision.
- VisionPuzzleVAE: encoder output `codes` is int64 N x 30 x 30 (ONNX ArgMax's native type, which onnxruntime and
  TensorRT 10 both take); the decoder input `z` is those int64 codes. The runtime hands codes to ROS as uint8.
- `model.safetensors` holds the float32 reference weights (state_dict) so the torch backend can rebuild the
  sage_ros.models class from `architecture` + `latent_dim` without torch pickles.
"""
from __future__ import annotations

import copy
import datetime as _dt
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sage_ros.atomic import atomic_path, atomic_write_json
from sage_ros.hashing import sha256_file
from sage_ros.runtime.bundle import GAUSSIAN_ARCHITECTURES, VQ_ARCHITECTURES  # one list: what a bundle may hold

BUNDLE_FORMAT_VERSION = 1
ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
WEIGHTS_FILE = "model.safetensors"
BUNDLE_FILE = "bundle.json"
PRECISIONS = ("fp32", "fp16", "int8", "int4")


class _MatMulLinear(nn.Module):
    """Drop-in for nn.Linear that traces to MatMul + Add instead of Gemm (see module docstring)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.weight_t = nn.Parameter(linear.weight.detach().t().contiguous(), requires_grad=False)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.matmul(x, self.weight_t)
        return y if self.bias is None else y + self.bias


def _linears_as_matmul(model: nn.Module) -> nn.Module:
    """A deep copy of `model` with every nn.Linear replaced by _MatMulLinear."""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, child_name, _MatMulLinear(child))
    return model


class _GaussianEncoder(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor):
        mu, logvar = self.model.encode(image)
        return mu, logvar


class _Decoder(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode(z)


class _PuzzleEncoder(nn.Module):
    """VisionPuzzleVAE encoder graph with the code search folded into one 1x1 convolution.

    quantize() picks argmin_k |z - c_k|^2 = argmax_k (2 c_k.z - |c_k|^2) with z = W h + b (the 1x1 `to_latent`
    conv after the bilinear resize of h). So the scores are one 1x1 conv of h with weights 2 C W and bias
    2 C b - |c_k|^2 (folded in float64), and because bilinear weights sum to 1 the resize commutes with a 1x1
    conv: conv at 28 x 28 on 128 channels, resize 10 score maps to 30 x 30, ArgMax. Same codes as the torch
    model up to float rounding of near-ties (`sage-ros export --evaluate` measures the agreement); the graph
    loses the L-channel latent, the per-cell transpose/MatMul/ReduceSum search and the 128-channel resize, and
    the quantizers see plain Conv -> ... -> Conv -> Resize -> ArgMax.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        from sage_ros.models.puzzle_vae import GRID

        self.model, self.grid = model, GRID
        w = model.to_latent.weight.detach().double()[:, :, 0, 0]      # L x C
        b = model.to_latent.bias.detach().double()                    # L
        codebook = model.codebook.weight.detach().double()            # K x L
        self.scores = nn.Conv2d(w.shape[1], codebook.shape[0], 1)
        with torch.no_grad():
            self.scores.weight.copy_((2 * codebook @ w)[:, :, None, None].float())
            self.scores.bias.copy_((2 * codebook @ b - codebook.pow(2).sum(1)).float())

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        scores = self.scores(self.model.encoder(image))
        scores = torch.nn.functional.interpolate(scores, size=(self.grid, self.grid), mode="bilinear",
                                                 align_corners=False)
        return scores.argmax(dim=1)  # int64 N x 30 x 30; first index on ties, as torch's argmin in quantize()


def architecture_of(model: nn.Module) -> str:
    name = type(model).__name__
    if name not in GAUSSIAN_ARCHITECTURES + VQ_ARCHITECTURES:
        raise ValueError(f"cannot export {name}: bundles hold {GAUSSIAN_ARCHITECTURES + VQ_ARCHITECTURES}")
    return name


def latent_shape_of(model: nn.Module) -> list[int]:
    """[L] for the Gaussian VAEs; [30, 30] (the code grid) for VisionPuzzleVAE."""
    if architecture_of(model) in VQ_ARCHITECTURES:
        from sage_ros.models.puzzle_vae import GRID
        return [GRID, GRID]
    return [int(model.latent_dim)]


def input_spec_of(model: nn.Module) -> dict:
    lo, hi = model.input_range
    return {"height": model.image_size, "width": model.image_size, "color_order": "rgb", "layout": "NCHW",
            "dtype": "float32", "range": [float(lo), float(hi)]}


def _export_onnx(module: nn.Module, example: torch.Tensor, path: Path, input_name: str,
                 output_names: list[str], opset: int) -> None:
    dynamic_axes = {name: {0: "N"} for name in [input_name, *output_names]}
    with atomic_path(path, suffix=".onnx") as tmp, torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo, which cannot write opset 17 (module doc).
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        # GroupNorm's batch-size sanity check is traced as a constant; it does not change the graph.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(module, (example,), str(tmp), dynamo=False, opset_version=opset,
                          input_names=[input_name], output_names=output_names, dynamic_axes=dynamic_axes,
                          do_constant_folding=True)


def _fix_output_shapes(path: Path, shapes: dict[str, list]) -> None:
    """Write the known output shapes into the graph: the tracer names reshaped dims oddly ('N','N','Reshape...')."""
    import onnx

    model = onnx.load(str(path))
    for output in model.graph.output:
        if output.name in shapes:
            dims = output.type.tensor_type.shape.dim
            del dims[:]
            for size in shapes[output.name]:
                dim = dims.add()
                if isinstance(size, str):
                    dim.dim_param = size
                else:
                    dim.dim_value = size
    onnx.checker.check_model(model)
    with atomic_path(path, suffix=".onnx") as tmp:
        onnx.save(model, str(tmp))


def _to_fp16(path: Path) -> None:
    """Rewrite an fp32 ONNX file in place as fp16 weights + compute with float32 inputs/outputs."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    # The VQ code search stays float32: near-ties flip in fp16. Folded graphs (_PuzzleEncoder): the score conv
    # (named /scores/...), its Resize and ArgMax; an unfolded search's Pow/ReduceSum/ArgMin (no fp16 Pow on CPU).
    block = list(DEFAULT_OP_BLOCK_LIST) + ["Pow", "ReduceSum", "ArgMin", "ArgMax"]
    model = onnx.load(str(path))
    nodes = list(model.graph.node)
    first_score = next((i for i, n in enumerate(nodes) if n.name.startswith("/scores/")), None)
    keep = [n.name for n in nodes[first_score:]] if first_score is not None else []
    model16 = convert_float_to_float16(model, keep_io_types=True, op_block_list=block, node_block_list=keep)
    with atomic_path(path, suffix=".onnx") as tmp:
        onnx.save(model16, str(tmp))


def _save_weights(model: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().to(torch.float32) if v.is_floating_point() else v.detach()
             for k, v in model.state_dict().items()}
    state = {k: v.contiguous().cpu() for k, v in state.items()}
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(state, str(tmp), metadata={"architecture": type(model).__name__,
                                             "latent_dim": str(model.latent_dim)})


def save_reference_weights(model: nn.Module, out_dir: str | Path) -> Path:
    """Write out_dir/model.safetensors: the float32 state_dict the torch backend rebuilds the model from (the
    parity reference). Call it before write_bundle, which then records `torch_weights`. For quantized bundles
    pass the model whose weights the graph holds (dequantized) or the float model, and say which in `extra`."""
    path = Path(out_dir) / WEIGHTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    _save_weights(model, path)
    return path


def export_onnx(model: nn.Module, out_dir: str | Path, *, precision: str = "fp32", opset: int = 17) -> dict:
    """Write encoder.onnx and decoder.onnx for `model` into out_dir; returns the io description for bundle.json."""
    if precision not in ("fp32", "fp16"):
        raise ValueError(f"export_onnx writes fp32 or fp16 graphs, not {precision!r} "
                         "(int8/int4 graphs come from sage_ros.compression.quantize)")
    architecture = architecture_of(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = _linears_as_matmul(model).eval().float().cpu()
    size = model.image_size
    example = torch.zeros(1, 3, size, size)
    if architecture in VQ_ARCHITECTURES:
        _export_onnx(_PuzzleEncoder(model), example, out_dir / ENCODER_FILE, "image", ["codes"], opset)
        _fix_output_shapes(out_dir / ENCODER_FILE, {"codes": ["N", *latent_shape_of(model)]})
        codes = torch.zeros(1, *latent_shape_of(model), dtype=torch.int64)
        _export_onnx(_Decoder(model), codes, out_dir / DECODER_FILE, "z", ["image"], opset)
    else:
        latent = ["N", model.latent_dim]
        _export_onnx(_GaussianEncoder(model), example, out_dir / ENCODER_FILE, "image", ["mu", "logvar"], opset)
        _fix_output_shapes(out_dir / ENCODER_FILE, {"mu": latent, "logvar": latent})
        _export_onnx(_Decoder(model), torch.zeros(1, model.latent_dim), out_dir / DECODER_FILE, "z", ["image"],
                     opset)
    _fix_output_shapes(out_dir / DECODER_FILE, {"image": ["N", 3, size, size]})
    if precision == "fp16":
        _to_fp16(out_dir / ENCODER_FILE)
        _to_fp16(out_dir / DECODER_FILE)
    return {"encoder": ENCODER_FILE, "decoder": DECODER_FILE}


def _onnx_io(path: Path) -> dict:
    """{"inputs": {name: {"shape": [...], "dtype": ...}}, "outputs": {...}} read from the ONNX graph."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}

    def describe(values) -> dict:
        out = {}
        for value in values:
            if value.name in initializers:
                continue
            tensor_type = value.type.tensor_type
            dims = [d.dim_param if d.dim_param else int(d.dim_value) for d in tensor_type.shape.dim]
            out[value.name] = {"shape": dims, "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name}
        return out

    opset = next((o.version for o in onnx.load(str(path), load_external_data=False).opset_import
                  if o.domain in ("", "ai.onnx")), None)
    return {"inputs": describe(graph.input), "outputs": describe(graph.output), "opset": opset}


def _versions() -> dict:
    versions = {"torch": torch.__version__}
    for module_name in ("onnx", "onnxruntime"):
        try:
            versions[module_name] = __import__(module_name).__version__
        except ImportError:
            versions[module_name] = None
    return versions


def write_bundle(out_dir: str | Path, *, name: str, architecture: str, precision: str, input_spec: dict,
                 latent_shape: list[int], metrics: dict | None, created_by: str, extra: dict | None = None) -> Path:
    """Hash every file already in out_dir and write out_dir/bundle.json atomically; returns its path.

    out_dir must hold encoder.onnx and decoder.onnx; model.safetensors, if present, is recorded as
    `torch_weights`. `extra` keys are merged last (e.g. quantization details: which layers are INT4 and whether
    they are deployable MatMuls or storage-only).
    """
    out_dir = Path(out_dir)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if architecture not in GAUSSIAN_ARCHITECTURES + VQ_ARCHITECTURES:
        raise ValueError(f"architecture {architecture!r} cannot be bundled")
    for required in (ENCODER_FILE, DECODER_FILE):
        if not (out_dir / required).is_file():
            raise FileNotFoundError(f"write_bundle: {out_dir / required} is missing")
    files = {p.name: sha256_file(p) for p in sorted(out_dir.iterdir())
             if p.is_file() and p.name != BUNDLE_FILE and not p.name.startswith(".")
             and not p.name.endswith((".engine", ".timing_cache"))}  # TensorRT caches are per device, not bundle
    encoder_io, decoder_io = _onnx_io(out_dir / ENCODER_FILE), _onnx_io(out_dir / DECODER_FILE)
    meta: dict[str, Any] = {
        "format_version": BUNDLE_FORMAT_VERSION,
        "name": name,
        "architecture": architecture,
        "precision": precision,
        "input": dict(input_spec),
        "latent_shape": [int(d) for d in latent_shape],
        "encoder": {"file": ENCODER_FILE, **{k: encoder_io[k] for k in ("inputs", "outputs")}},
        "decoder": {"file": DECODER_FILE, **{k: decoder_io[k] for k in ("inputs", "outputs")}},
        "opset": encoder_io["opset"],
        "io_dtype": "float32",
        "files": files,
        "metrics": metrics or {},
        "created_by": created_by,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
    }
    if architecture in VQ_ARCHITECTURES:
        meta["codes_dtype"] = "int64"
    if WEIGHTS_FILE in files:
        meta["torch_weights"] = WEIGHTS_FILE
    meta.update(extra or {})
    path = out_dir / BUNDLE_FILE
    atomic_write_json(path, meta)
    return path


def export_bundle(model: nn.Module, out_dir: str | Path, *, name: str, precision: str = "fp32",
                  metrics: dict | None = None, created_by: str = "sage_ros.compression.export", opset: int = 17,
                  extra: dict | None = None) -> Path:
    """Export `model` (TinyVAE / TinyVAE32 / VisionPuzzleVAE) as a complete bundle in out_dir; returns out_dir."""
    out_dir = Path(out_dir)
    architecture = architecture_of(model)
    was_training = model.training
    model.eval()
    try:
        export_onnx(model, out_dir, precision=precision, opset=opset)
        _save_weights(model, out_dir / WEIGHTS_FILE)
    finally:
        model.train(was_training)
    extra = {"latent_dim": int(model.latent_dim), **({"num_codes": int(model.num_codes)}
                                                     if architecture in VQ_ARCHITECTURES else {}), **(extra or {})}
    write_bundle(out_dir, name=name, architecture=architecture, precision=precision,
                 input_spec=input_spec_of(model), latent_shape=latent_shape_of(model), metrics=metrics,
                 created_by=created_by, extra=extra)
    return out_dir


def read_bundle_json(out_dir: str | Path) -> dict:
    return json.loads((Path(out_dir) / BUNDLE_FILE).read_text())
