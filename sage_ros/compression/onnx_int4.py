"""Quantized ONNX bundles, INT4 weight-only (the INT8 static-QDQ bundle and OnnxQuantError are in
sage_ros.compression.onnx_quant).

INT4 (`export_int4_bundle`): the model is quantized with quantize.Int4Config (group-wise, fp16-representable
scales), exported as fp32 ONNX, converted to opset 21, and every Linear's MatMul weight is replaced by an
opset-21 `DequantizeLinear(int4 weight [K, N], scale [ceil(K / group), N], axis=0, block_size=group)` feeding
the MatMul: 4-bit weights in the graph, the exact same integers and scales as the torch INT4 model. TensorRT 10
runs this pattern as INT4 weight-only GEMM; onnxruntime's CPU provider fuses it into MatMulNBits. Convolutions
have no INT4 kernels anywhere (TensorRT included), so they are INT4 *storage-only*: the graph holds their
dequantized float values and the bundle ships the packed INT4 copy (model.int4.safetensors, loadable with
quantize.load_quantized). With Int4Config(conv_scheme="int8") the convolutions are INT8 instead, and those go
into the graph as int8 initializers + DequantizeLinear (int8_conv_rewrite: the same float values, a quarter of the
bytes); compact_graph then keeps fp16-exact scales and large biases as float16 + Cast and drops value_info.
bundle.json `quantization` lists which layers are which and the measured bytes.
Graph scales are float32 (the fp16 values widened): a float16 scale would make DequantizeLinear output float16
and need a Cast, which stops onnxruntime's DQ->MatMul fusion (measured) and is no longer the plain DQ->MatMul
pattern TensorRT's weight-only GEMM looks for (not verified here: no GPU). That costs 0.5 bit per weight at group 64
(4.5 bits -> 7.1x vs fp32), against 7.5x for the fp16-scale safetensors file.
"""
from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sage_ros.atomic import atomic_path

from . import export as fp_export
from .onnx_quant import OnnxQuantError, write_quantized_bundle
from .quantize import Int4Config, pack_int4, quantize_, save_quantized, unpack_int4

INT4_OPSET = 21
INT4_STORAGE_FILE = "model.int4.safetensors"


def _int4_matmul_weights(module: nn.Linear) -> tuple[np.ndarray, np.ndarray]:
    """A quantize_'d Linear as the ONNX MatMul B operand: int4 values [K, N] and float32 scales [G, N]."""
    stored = module._sage_quant
    k = stored["fan_in"]
    q = unpack_int4(stored["q"])[:, :k].numpy()           # [N, K] (row = output channel)
    scale = stored["scale"].float().numpy()               # [N, G] fp16 values, widened
    return np.ascontiguousarray(q.T), np.ascontiguousarray(scale.T)


def _insert_and_save(model, new_nodes: list, onnx_path: Path) -> None:
    """Put the DequantizeLinear nodes first (their outputs keep the old initializers' names), check, save atomically."""
    import onnx

    for node in reversed(new_nodes):
        model.graph.node.insert(0, node)
    onnx.checker.check_model(model)
    with atomic_path(onnx_path, suffix=".onnx") as tmp:
        onnx.save(model, str(tmp))


def int4_rewrite(onnx_path: Path, linears: dict[str, nn.Linear], group_size: int) -> dict:
    """Rewrite one fp32 graph in place: opset 21, Linear MatMul weights -> int4 DequantizeLinear.

    `linears` maps module names (as in `model.<name>.weight_t`, the export's initializer names) to
    quantize_'d nn.Linear modules. Returns {module name: {"int4_bytes", "scale_bytes", "fp32_bytes"}}.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper, version_converter

    model = version_converter.convert_version(onnx.load(str(onnx_path)), INT4_OPSET)
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    matmul_b = {n.input[1] for n in graph.node if n.op_type == "MatMul"}
    done, new_nodes = {}, []
    for name, module in linears.items():
        init_name = f"model.{name}.weight_t"
        if init_name not in inits or init_name not in matmul_b:
            continue  # this Linear is not in this graph (encoder vs decoder)
        q, scale = _int4_matmul_weights(module)
        fp32_values = numpy_helper.to_array(inits[init_name])
        expected = q.astype(np.float32) * np.repeat(scale, group_size, axis=0)[: q.shape[0]]
        if fp32_values.shape != q.shape or not np.array_equal(fp32_values, expected):
            raise OnnxQuantError(f"{onnx_path.name}: {init_name} does not hold the INT4 model's weights")
        # raw_data with two weights per byte (low nibble first, ONNX's int4 layout): the list form would be
        # stored as one varint per byte in int32_data, ~45 % bigger
        packed = pack_int4(torch.from_numpy(np.append(q.flatten(), [0] * (q.size % 2)).astype(np.int8)))
        q_init = helper.make_tensor(f"{init_name}_int4", TensorProto.INT4, list(q.shape),
                                    packed.numpy().tobytes(), raw=True)
        s_init = numpy_helper.from_array(scale.astype(np.float32), f"{init_name}_scale")
        graph.initializer.remove(inits[init_name])
        graph.initializer.extend([q_init, s_init])
        # the DQ output keeps the old initializer's name, so the MatMul is untouched
        new_nodes.append(helper.make_node("DequantizeLinear", [q_init.name, s_init.name], [init_name],
                                          name=f"{name}_dq_int4", axis=0, block_size=group_size))
        done[name] = {"shape_KN": list(q.shape), "int4_bytes": len(q_init.raw_data),
                      "scale_bytes": scale.size * 4, "fp32_bytes": q.size * 4}
    _insert_and_save(model, new_nodes, onnx_path)
    return done


def int8_conv_rewrite(onnx_path: Path, convs: dict[str, nn.Module]) -> dict:
    """Rewrite one graph in place: each INT8-quantized convolution's float weight initializer becomes its int8
    values + a float32 per-output-channel scale feeding a DequantizeLinear (axis 0 for Conv, 1 for a
    ConvTranspose): exactly the same float weights (q * scale, checked), a quarter of the bytes. The convolution
    itself stays float (no INT8 activations: this is the INT4 bundle's weight-only scheme).
    `convs` maps module names (initializer `model.<name>.weight`) to quantize_'d modules with an int8 scheme.
    Returns {module name: {"int8_bytes", "scale_bytes", "fp32_bytes"}}."""
    import onnx
    from onnx import helper, numpy_helper

    from .quantize import rows_to_weight

    model = onnx.load(str(onnx_path))
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    conv_w = {n.input[1]: n.op_type for n in graph.node if n.op_type in ("Conv", "ConvTranspose") and len(n.input) > 1}
    done, new_nodes = {}, []
    for name, module in convs.items():
        init_name = f"model.{name}.weight"
        stored = getattr(module, "_sage_quant", None)
        if init_name not in inits or init_name not in conv_w or stored is None or stored["scheme"] != "int8":
            continue
        if conv_w[init_name] == "ConvTranspose" and module.groups != 1:
            continue  # per-channel axis of a grouped ConvTranspose is not one ONNX axis: stays float
        axis = 1 if conv_w[init_name] == "ConvTranspose" else 0
        fp32_values = numpy_helper.to_array(inits[init_name])
        q = rows_to_weight(module, stored["q"].float(), module.weight.shape).round().numpy().astype(np.int8)
        scale = stored["scale"].float().numpy().reshape(-1)
        shape = [1] * q.ndim
        shape[axis] = -1
        if fp32_values.shape != q.shape or not np.array_equal(fp32_values, q.astype(np.float32) * scale.reshape(shape)):
            raise OnnxQuantError(f"{onnx_path.name}: {init_name} does not hold the INT8 convolution's weights")
        q_init = numpy_helper.from_array(q, f"{init_name}_int8")
        s_init = numpy_helper.from_array(scale.astype(np.float32), f"{init_name}_scale")
        graph.initializer.remove(inits[init_name])
        graph.initializer.extend([q_init, s_init])
        new_nodes.append(helper.make_node("DequantizeLinear", [q_init.name, s_init.name], [init_name],
                                          name=f"{name}_dq_int8", axis=axis))
        done[name] = {"shape": list(q.shape), "int8_bytes": int(q.size), "scale_bytes": int(scale.size * 4),
                      "fp32_bytes": int(q.size * 4)}
    _insert_and_save(model, new_nodes, onnx_path)
    return done


FP16_BIAS_MIN = 1024  # biases with at least this many values are stored as float16 in an INT4 graph


def compact_graph(onnx_path: Path) -> dict:
    """Shrink one INT4 graph in place without changing what onnxruntime computes from its weights:
    every DequantizeLinear scale that is exactly float16-representable (quantize_ stores fp16 scales) is kept as
    float16 + a Cast to float32 (constant-folded at session start, so the DQ -> MatMul fusion still sees float32
    scales), biases of >= FP16_BIAS_MIN values are stored as float16 + Cast (a float16 rounding of the bias: the
    one change of values, measured by the export's --evaluate), and the optional value_info shape annotations are
    dropped. At L = 8 fc_decode's bias and its per-column scales (K = 8 < one group) were a quarter of the graph.
    Returns {"fp16_initializers": [...], "bytes_saved": n}."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    before = onnx_path.stat().st_size
    model = onnx.load(str(onnx_path))
    graph = model.graph
    dq_scales = {n.input[1] for n in graph.node if n.op_type == "DequantizeLinear" and len(n.input) > 1}
    users = {}
    for n in graph.node:
        for i, name in enumerate(n.input):
            users.setdefault(name, []).append((n.op_type, i))
    changed, casts = [], []
    for init in list(graph.initializer):
        if init.data_type != TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(init)
        half = values.astype(np.float16)
        exact = np.array_equal(half.astype(np.float32), values)
        is_bias = init.name.endswith(".bias") and values.size >= FP16_BIAS_MIN
        if not ((init.name in dq_scales and exact) or is_bias):
            continue
        graph.initializer.remove(init)
        graph.initializer.append(numpy_helper.from_array(half, f"{init.name}_fp16"))
        casts.append(helper.make_node("Cast", [f"{init.name}_fp16"], [init.name], name=f"{init.name}_cast",
                                      to=TensorProto.FLOAT))
        changed.append(init.name)
    for node in reversed(casts):
        graph.node.insert(0, node)
    del graph.value_info[:]
    onnx.checker.check_model(model)
    with atomic_path(onnx_path, suffix=".onnx") as tmp:
        onnx.save(model, str(tmp))
    return {"fp16_initializers": changed, "bytes_saved": before - onnx_path.stat().st_size}


def export_int4_bundle(model: nn.Module, out_dir, *, name: str, config: Int4Config | None = None,
                       metrics: dict | None = None, created_by: str = "sage_ros.compression.onnx_int4",
                       calibration=None) -> Path:
    """Write a bundle: encoder/decoder ONNX with INT4 Linear weights in the graph, convolutions storage-only
    (float in the graph, packed INT4 in model.int4.safetensors). `model` is the float model; it is not changed.
    `calibration` (float NCHW in the model's range) is needed for config.rounding == "gptq"."""
    config = config or Int4Config()
    out_dir = Path(out_dir)
    float_model = copy.deepcopy(model).eval().float()
    qmodel = quantize_(copy.deepcopy(float_model), config, calibration=calibration)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sage_fp32_") as tmp:
        fp_export.export_onnx(float_model, tmp, precision="fp32")
        fp32_bytes = {p: (Path(tmp) / p).stat().st_size for p in (fp_export.ENCODER_FILE, fp_export.DECODER_FILE)}
    fp_export.export_onnx(qmodel, out_dir, precision="fp32")
    linears = {n: m for n, m in qmodel.named_modules() if isinstance(m, nn.Linear)}
    in_graph = {}
    for part in (fp_export.ENCODER_FILE, fp_export.DECODER_FILE):
        in_graph.update(int4_rewrite(out_dir / part, linears, config.group_size))
    missing = set(linears) - set(in_graph)
    if missing:
        raise OnnxQuantError(f"Linear layers not found as MatMul weights in the graphs: {sorted(missing)}")
    # INT8 convolutions go into the graph as int8 + DequantizeLinear (same values, 4x fewer bytes): at L = 8 the
    # convolutions are most of the bundle, so storage-only left it only 2.5x smaller than fp32
    conv_in_graph = {}
    if config.conv_scheme == "int8":
        convs = {n: m for n, m in qmodel.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))}
        for part in (fp_export.ENCODER_FILE, fp_export.DECODER_FILE):
            conv_in_graph.update(int8_conv_rewrite(out_dir / part, convs))
    compacted = {part: compact_graph(out_dir / part) for part in (fp_export.ENCODER_FILE, fp_export.DECODER_FILE)}
    save_quantized(qmodel, out_dir / INT4_STORAGE_FILE)
    storage_only = {t["tensor"].removesuffix(".weight"): t["scheme"] for t in qmodel.quantization_report["tensors"]
                    if t["module"] != "Linear"}
    onnx_bytes = {p: (out_dir / p).stat().st_size for p in fp32_bytes}
    lin_fp32 = sum(v["fp32_bytes"] for v in in_graph.values())
    lin_int4 = sum(v["int4_bytes"] + v["scale_bytes"] for v in in_graph.values())
    extra = {
        "latent_dim": int(model.latent_dim),
        # the runtime's torch backend rebuilds the INT4 model from this file (quantize.load_quantized)
        "torch_weights": INT4_STORAGE_FILE, "torch_weights_format": "sage_ros.quantized",
        "quantization": {
            "scheme": "int4-weight-only", "group_size": config.group_size, "rounding": config.rounding,
            "conv_scheme": config.conv_scheme,
            "int4_in_graph": sorted(in_graph), "int4_in_graph_detail": in_graph,
            "int4_storage_only": sorted(k for k, v in storage_only.items() if v == "int4"),
            "int8_storage_only": sorted(k for k, v in storage_only.items() if v == "int8" and k not in conv_in_graph),
            "int8_conv_in_graph": sorted(conv_in_graph),
            "int8_conv_bytes": sum(v["int8_bytes"] + v["scale_bytes"] for v in conv_in_graph.values()),
            "fp32_conv_bytes": sum(v["fp32_bytes"] for v in conv_in_graph.values()),
            "compacted": compacted,
            "storage_file": INT4_STORAGE_FILE,
            "graph_scale_dtype": "float32",
            "onnx_bytes": onnx_bytes, "onnx_bytes_fp32": fp32_bytes,
            "onnx_ratio_vs_fp32": sum(fp32_bytes.values()) / sum(onnx_bytes.values()),
            "int4_linear_bytes": lin_int4, "fp32_linear_bytes": lin_fp32,
            "int4_linear_ratio": (lin_fp32 / lin_int4) if lin_int4 else None,
            "storage_file_bytes": (out_dir / INT4_STORAGE_FILE).stat().st_size,
        },
    }
    return write_quantized_bundle(model, out_dir, name=name, precision="int4", metrics=metrics,
                                  created_by=created_by, extra=extra)


def read_quantization(bundle_dir) -> dict:
    return json.loads((Path(bundle_dir) / fp_export.BUNDLE_FILE).read_text()).get("quantization", {})


def torch_int4_model(bundle_dir) -> nn.Module:
    """The torch model an INT4 bundle's storage file rebuilds (same weights as its graph)."""
    from .quantize import load_quantized

    return load_quantized(Path(bundle_dir) / INT4_STORAGE_FILE)
