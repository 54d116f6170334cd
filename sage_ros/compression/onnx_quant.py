"""Quantized ONNX bundles, INT8: weights + activations as static QDQ (the INT4 weight-only bundle is
sage_ros.compression.onnx_int4; OnnxQuantError, the error of both, is defined here).

INT8 (`export_int8_bundle`): the fp32 graphs of sage_ros.compression.export go through onnxruntime's
`quant_pre_process` (shape inference + graph cleanup) and `quantize_static` with QuantFormat.QDQ, per-channel
symmetric int8 weights and symmetric int8 activations (TensorRT 10 takes only symmetric Q/DQ; onnxruntime's CPU
kernels take S8S8 too). Activation ranges come from a CalibrationDataReader over calibration images (the val
split by default: never the test split the report is measured on). The decoder is calibrated on the float
encoder's mu (codes for the VQ model) of the same images. Calibration method MinMax / Entropy / Percentile.
Linear layers come out of quant_pre_process as Gemm (it fuses MatMul + Add); their outputs (mu, logvar) are
not re-quantized. GroupNorm's affine Mul/Add constants are quantized like any other weight.
For VisionPuzzleVAE the nearest-codebook search (MatMul/ArgMin after the last Conv) stays float: quantizing
distances flips codes for no size gain.
"""
from __future__ import annotations

import copy
import shutil
import tempfile
from pathlib import Path

import numpy as np
from torch import nn

from sage_ros.atomic import atomic_path

from . import export as fp_export
from .quantize import Int8Config, quantize_, save_quantized

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
# INT8 bundles keep their per-channel INT8 weights for the torch backend (weights only: activations stay float
# there, so torch vs the QDQ graph is compared at the int8 tolerance, never presented as bit-exact).
INT8_STORAGE_FILE = "model.int8.safetensors"


class OnnxQuantError(ValueError):
    """A graph or calibration set that cannot be quantized as asked."""


# ---------------------------------------------------------------- INT8 static QDQ

class ArrayCalibrationReader:
    """onnxruntime CalibrationDataReader over a float32 array, in batches (the reader protocol: get_next()
    returns one feed dict or None at the end; rewind() restarts)."""

    def __init__(self, input_name: str, array: np.ndarray, batch_size: int = 32):
        self.input_name, self.array, self.batch_size = input_name, array, batch_size
        self._pos = 0

    def get_next(self):
        if self._pos >= len(self.array):
            return None
        batch = self.array[self._pos:self._pos + self.batch_size]
        self._pos += self.batch_size
        return {self.input_name: batch}

    def rewind(self):
        self._pos = 0


def _calibration_method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if name not in methods:
        raise OnnxQuantError(f"calibration method must be one of {CALIBRATION_METHODS}, got {name!r}")
    return methods[name]


def graph_nodes(path: Path) -> list:
    """The nodes of an ONNX graph, in order (what the float-node selectors below read; load once, pass to each)."""
    import onnx

    return list(onnx.load(str(path), load_external_data=False).graph.node)


def _vq_search_nodes(nodes: list) -> list[str]:
    """Names of the nodes of a VisionPuzzleVAE encoder's code search (graph_nodes), kept float: the last Conv (the
    folded score conv, see export._PuzzleEncoder: int8 scores would flip near-tied codes) and everything after it."""
    last_conv = max(i for i, n in enumerate(nodes) if n.op_type == "Conv")
    return [n.name for n in nodes[last_conv:]]


# Per-image normalisation (GroupNorm exports as Reshape -> InstanceNormalization -> Reshape -> Mul -> Add).
PER_IMAGE_NORM_OPS = ("InstanceNormalization", "GroupNormalization", "LayerNormalization")


def per_image_norm_nodes(nodes: list) -> list[str]:
    """Names of the nodes of every per-image normalisation in a graph (graph_nodes), and of the Conv that feeds
    each, kept float.

    Why: GroupNorm divides by each image's own statistics, so the range of its input (and of the normalised
    tensor before the affine) varies from image to image; one static per-tensor int8 scale is either too coarse
    for low-contrast images or clips high-contrast ones. Measured on TinyVAE L=64 (val, symmetric int8): the
    encoder lost 0.24 dB with its three GroupNorms quantized and 0.04 dB with them float, at the same file size.
    The input is the Conv's output, which a Q/DQ placement rounds to int8 with the Conv, so the feeding Conv stays
    float too (three 1x1 convs in TinyVAE, 2,608 weights): on the 30,000-step TinyVAE L=64, whose last one spans
    3x the range of the 6,000-step run's, val ΔPSNR went from -0.26 to -0.12 dB (minmax, symmetric). A node
    belongs to a normalisation when it shares the module scope of its InstanceNormalization node (the exporter
    names nodes /<module path>/<Op>)."""
    scopes = {n.name.rsplit("/", 1)[0] + "/" for n in nodes if n.op_type in PER_IMAGE_NORM_OPS and "/" in n.name}
    norm = [n for n in nodes if n.op_type not in ("Constant", "Shape")
            and (n.op_type in PER_IMAGE_NORM_OPS or any(n.name.startswith(s) for s in scopes))]
    inside = {out for n in norm for out in n.output}
    norm_inputs = {i for n in norm for i in n.input if i not in inside}
    feeding_convs = [n for n in nodes if n.op_type == "Conv" and n.output[0] in norm_inputs]
    return [n.name for n in feeding_convs + norm]


def linear_path_nodes(nodes: list) -> list[str]:
    """Names of the nodes of a *LinSkip model's fixed PCA path (models/linear_skip.py), kept float: the lin_enc /
    lin_dec MatMuls and the weightless top-level nodes around them (area pooling, mean, the sums and the clamp).

    Why: lin_enc holds whitened PCA rows, each divided by its component's std, so its rows span ~100x in scale;
    the exporter writes Linears as MatMul, which onnxruntime quantizes with one scale per tensor, and the first
    (largest, most important) components round to a few levels. Measured on the issue-22 TinyVAELinSkip L=64: test
    ΔPSNR -2.05 dB, μ cosine 0.969 with the path quantized. Costs the path's 2 x 3,072 L weights in float."""
    if not any(n.name.startswith(("/lin_enc/", "/lin_dec/")) for n in nodes):
        return []
    return [n.name for n in nodes if n.op_type not in ("Constant", "Shape")
            and (n.name.startswith(("/lin_enc/", "/lin_dec/")) or n.name.count("/") == 1)]


ENTROPY_BINS, ENTROPY_QUANTIZED_BINS = 2048, 128


def _entropy_ranges(model_path: Path, reader, cache_path: Path, tmp: Path, symmetric: bool = True) -> None:
    """KL-divergence (entropy) activation ranges over a 2048-bin histogram, saved as a quantize_static
    calibration cache. Why not quantize_static's own Entropy: it builds 128-bin histograms with 128 quantized
    bins, so the threshold search has exactly one candidate (the full range) and the result equals MinMax
    (measured: identical graphs); quantize_static passes no option to change the bin counts."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator, save_tensors_data

    calibrator = create_calibrator(model_path, None, augmented_model_path=str(tmp / "augmented.onnx"),
                                   calibrate_method=CalibrationMethod.Entropy,
                                   extra_options={"symmetric": symmetric, "num_bins": ENTROPY_BINS,
                                                  "num_quantized_bins": ENTROPY_QUANTIZED_BINS})
    calibrator.collect_data(reader)
    save_tensors_data(calibrator.compute_data(), cache_path)
    reader.rewind()


# Activation schemes. "int8": symmetric int8 (zero point 0), the only Q/DQ TensorRT 10 takes. "uint8":
# asymmetric uint8, for CPU-only bundles: the zero point can sit at a Relu's 0, so onnxruntime folds the Relu
# after each conv into the quantization instead of keeping Conv -> Q -> DQ -> Relu -> Q between layers
# (measured by bench/profile_node.py: VisionPuzzleVAE 1.25x -> 1.78x over fp32; TinyVAE 0.35x -> 1.03x).
INT8_ACTIVATIONS = {"int8": ("QInt8", True, "int8 per-tensor symmetric"),
                    "uint8": ("QUInt8", False, "uint8 per-tensor asymmetric (CPU only: TensorRT needs int8)")}
# Q/DQ placement. "all": onnxruntime's default, Q/DQ on the inputs and the output of every quantized op (what
# its CPU kernels fuse into QLinearConv etc.). "inputs": Q/DQ only on the inputs of quantized ops (weights and
# activations), never on their outputs: Conv -> Relu -> Q -> DQ -> Conv, the placement TensorRT's docs recommend
# (it fuses Conv + bias + ReLU and picks the output precision itself) instead of a Q/DQ pair between every Conv
# and its ReLU.
INT8_PLACEMENTS = ("all", "inputs")
# Bundles per deployment target: (activations, placement). CPU: asymmetric uint8, where onnxruntime folds each
# ReLU into the zero point (measured faster, BENCHMARKS.md); TensorRT: symmetric int8 (the only Q/DQ TensorRT 10
# takes), Q/DQ at layer inputs only.
INT8_TARGETS = {"cpu": ("uint8", "all"), "tensorrt": ("int8", "inputs")}
# uint8 activations x int8 weights on an x86 CPU without VNNI (AVX2 only, like this project's machine) run through
# VPMADDUBSW, which adds pairs of u8*s8 products into int16 and saturates: onnxruntime's docs recommend 7-bit
# weights (reduce_range) there. Measured on the shipped puzzle (AVX2-only EPYC): 8-bit weights agree with fp32 on
# ~95.5 % of codes, where the bundle's own record (an AVX-512 VNNI host, no saturation) says 98.9 %.
REDUCE_RANGE_WHY = "7-bit weights: no int16 saturation in onnxruntime's u8s8 kernels on CPUs without VNNI"


def quantize_graph_int8(fp32_path: Path, out_path: Path, input_name: str, calibration: np.ndarray, *,
                        method: str = "minmax", percentile: float = 99.999, exclude: list[str] | None = None,
                        batch_size: int = 32, activations: str = "int8", placement: str = "all",
                        reduce_range: bool = False) -> None:
    """quant_pre_process + quantize_static (QDQ, per-channel symmetric int8 weights; activations per
    INT8_ACTIVATIONS, Q/DQ placement per INT8_PLACEMENTS) of one graph file. reduce_range: 7-bit weights (see
    REDUCE_RANGE_WHY)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_static

    if activations not in INT8_ACTIVATIONS:
        raise OnnxQuantError(f"activations must be one of {sorted(INT8_ACTIVATIONS)}, got {activations!r}")
    if placement not in INT8_PLACEMENTS:
        raise OnnxQuantError(f"placement must be one of {INT8_PLACEMENTS}, got {placement!r}")
    activation_type, symmetric, _ = INT8_ACTIVATIONS[activations]

    calibrate_method = _calibration_method(method)
    with tempfile.TemporaryDirectory(prefix="sage_int8_") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        # mu / logvar are Gemm/MatMul outputs: left float, so the latent is not rounded to 8 bits per tensor
        # (the next layer's input, where there is one, is quantized anyway)
        extra = {"ActivationSymmetric": symmetric, "WeightSymmetric": True,
                 "OpTypesToExcludeOutputQuantization": ["Gemm", "MatMul"]}
        if placement == "inputs":
            extra["OpTypesToExcludeOutputQuantization"] = ["Conv", "ConvTranspose", "Gemm", "MatMul", "Resize",
                                                           "Relu", "Add", "Mul"]
        if symmetric:  # biases stay float: TensorRT takes no INT32 DequantizeLinear (it quantizes bias itself)
            extra["QuantizeBias"] = False
        if method == "percentile":
            extra["CalibPercentile"] = percentile
        out_tmp = Path(tmp) / "q.onnx"
        reader = ArrayCalibrationReader(input_name, calibration, batch_size)
        cache = None
        if method == "entropy":
            cache = Path(tmp) / "ranges.json"
            _entropy_ranges(pre, reader, cache, Path(tmp), symmetric)
        quantize_static(str(pre), str(out_tmp), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=getattr(QuantType, activation_type), weight_type=QuantType.QInt8,
                        calibrate_method=calibrate_method, nodes_to_exclude=exclude or [], extra_options=extra,
                        calibration_cache_path=cache, reduce_range=reduce_range)
        with atomic_path(out_path, suffix=".onnx") as final:
            shutil.copyfile(out_tmp, final)


# Per-channel weight axis TensorRT expects: the output-channel axis (Conv [O, I, kh, kw]: 0; ConvTranspose
# [I, O, kh, kw]: 1; MatMul B [K, N]: 1; Gemm B: 1, or 0 with transB).
_TRT_WEIGHT_AXIS = {"Conv": 0, "ConvTranspose": 1, "MatMul": 1}


def check_tensorrt_qdq(path) -> list[str]:
    """Problems that stop TensorRT 10 from building an explicitly quantized (Q/DQ) engine from this graph, as its
    docs state them: activations and weights int8 (no uint8), symmetric (every zero point 0), float32 scales > 0,
    per-tensor scales for activations, per-channel weight scales only along the output-channel axis, opset >= 13
    for per-channel Q/DQ, and every QuantizeLinear feeding DequantizeLinear only. [] = valid. A structural check of
    the graph (this machine has no TensorRT): the engine build itself happens on the device."""
    import onnx
    from onnx import TensorProto, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    problems = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    inits = {i.name: i for i in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    producers = {out: node for node in graph.node for out in node.output}
    qdq = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if not qdq:
        problems.append(f"{Path(path).name}: no QuantizeLinear/DequantizeLinear nodes (not explicitly quantized)")
    for node in qdq:
        where = f"{Path(path).name}:{node.name}"
        if len(node.input) < 3 or node.input[2] not in inits:
            problems.append(f"{where}: zero point missing or not a constant")
            continue
        zp = inits[node.input[2]]
        if zp.data_type != TensorProto.INT8:
            problems.append(f"{where}: zero point type {TensorProto.DataType.Name(zp.data_type)}, TensorRT needs INT8")
        if numpy_helper.to_array(zp).any():
            problems.append(f"{where}: non-zero zero point (asymmetric); TensorRT needs symmetric")
        scale = inits.get(node.input[1])
        if scale is None:
            problems.append(f"{where}: scale is not a constant")
            continue
        if scale.data_type != TensorProto.FLOAT or (numpy_helper.to_array(scale) <= 0).any():
            problems.append(f"{where}: scale must be float32 and > 0")
        per_channel = numpy_helper.to_array(scale).size > 1
        if node.op_type == "QuantizeLinear":
            bad = [c.op_type for c in consumers.get(node.output[0], []) if c.op_type != "DequantizeLinear"]
            if bad:
                problems.append(f"{where}: QuantizeLinear feeds {bad}, not DequantizeLinear")
            if per_channel:
                problems.append(f"{where}: per-channel activation quantization")
        elif per_channel:
            if opset < 13:
                problems.append(f"{where}: per-channel Q/DQ needs opset >= 13, graph is {opset}")
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            for user in consumers.get(node.output[0], []):
                want = _TRT_WEIGHT_AXIS.get(user.op_type)
                if want is not None and user.input[1] == node.output[0] and axis != want:
                    problems.append(f"{where}: per-channel axis {axis} for {user.op_type} weights, TensorRT "
                                    f"expects {want}")
            if node.input[0] not in inits and node.input[0] in producers and \
                    producers[node.input[0]].op_type != "QuantizeLinear":
                problems.append(f"{where}: per-channel DequantizeLinear of a non-constant tensor")
    return problems


def varied_calibration_images(size: int, count: int = 256, seed: int = 0, root=None) -> np.ndarray:
    """Calibration inputs like those a robot's camera gives the node, not only the fixed crops: a quarter val
    crops, and for the rest the whole frames and windows of many sizes and aspect ratios (area-resized as the node
    does) of the train and val photos of every family `make data` did not hold out. Whole frames have other
    activation ranges than close-up crops: an INT8 encoder calibrated on crops alone flips more codes on them.
    Never the test split, never the held-out family. uint8 N x size x size x 3."""
    from sage_ros.data import load_split, splits_info
    from sage_ros.data import data_root
    from sage_ros.data.holdout import family_windows, load_photos

    base = Path(root) if root is not None else data_root()
    info = splits_info(base)
    names = sorted(info["photos"]["train"] + info["photos"]["val"])
    rng = np.random.default_rng([seed, size, 0xCA1])
    photos = load_photos(base / "sources" / n for n in names)
    n_crops = count // 4
    n_whole = min(len(photos), count // 4)
    whole_pick = sorted(rng.choice(len(photos), n_whole, replace=False))
    wholes, _ = family_windows([photos[i] for i in whole_pick], size, 0, seed=seed)
    windows, _ = family_windows([photos[i] for i in rng.permutation(len(photos))], size,
                                count - n_crops - n_whole, seed=seed, whole_frames=False)
    val = load_split(size, "val", root=base, mmap=True)
    crops = np.asarray(val[np.sort(rng.choice(len(val), n_crops, replace=False))])
    return np.concatenate([crops, wholes, windows])[rng.permutation(count)]


def _calibration_inputs(model: nn.Module, images_uint8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(encoder input in the model's range, decoder input = float encoder's mu or codes) for calibration."""
    from .evaluate import TorchCodec, check_images, to_input

    codec = TorchCodec(model)
    images = check_images(images_uint8, codec.image_size)
    x = to_input(images, codec.input_range)
    model.eval()
    latents = [codec.encode(x[i:i + 64]) for i in range(0, len(x), 64)]
    key = "codes" if codec.is_vq else "mu"
    z = np.concatenate([lat[key] for lat in latents])
    return x, (z.astype(np.int64) if codec.is_vq else z.astype(np.float32))


def export_int8_bundle(model: nn.Module, out_dir, *, name: str, calibration_images: np.ndarray,
                       method: str = "minmax", percentile: float = 99.999, metrics: dict | None = None,
                       created_by: str = "sage_ros.compression.onnx_quant", calibration_source: str = "",
                       activations: str = "int8", placement: str = "all", target: str | None = None,
                       reduce_range: bool = False) -> Path:
    """Write a bundle with static-QDQ INT8 encoder.onnx / decoder.onnx; returns out_dir.
    activations: "int8" (symmetric, TensorRT and CPU) or "uint8" (asymmetric, faster on CPU; see INT8_ACTIVATIONS);
    placement: see INT8_PLACEMENTS; target ("cpu" | "tensorrt", INT8_TARGETS) sets both. A "tensorrt" bundle's
    graphs are checked with check_tensorrt_qdq before the bundle is written."""
    if target is not None:
        if target not in INT8_TARGETS:
            raise OnnxQuantError(f"target must be one of {sorted(INT8_TARGETS)}, got {target!r}")
        activations, placement = INT8_TARGETS[target]
    out_dir = Path(out_dir)
    architecture = fp_export.architecture_of(model)
    model = copy.deepcopy(model).eval().float()
    x, z = _calibration_inputs(model, calibration_images)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sage_fp32_") as tmp:
        fp_export.export_onnx(model, tmp, precision="fp32")
        fp32_bytes = {p: (Path(tmp) / p).stat().st_size for p in (fp_export.ENCODER_FILE, fp_export.DECODER_FILE)}
        encoder_fp32, decoder_fp32 = Path(tmp) / fp_export.ENCODER_FILE, Path(tmp) / fp_export.DECODER_FILE
        encoder_nodes = graph_nodes(encoder_fp32)
        exclude = per_image_norm_nodes(encoder_nodes) + linear_path_nodes(encoder_nodes)
        if architecture == "VisionPuzzleVAE":
            exclude += _vq_search_nodes(encoder_nodes)
        decoder_nodes = graph_nodes(decoder_fp32)
        decoder_exclude = per_image_norm_nodes(decoder_nodes) + linear_path_nodes(decoder_nodes)
        quantize_graph_int8(encoder_fp32, out_dir / fp_export.ENCODER_FILE, "image", x,
                            method=method, percentile=percentile, exclude=exclude, activations=activations,
                            placement=placement, reduce_range=reduce_range)
        quantize_graph_int8(decoder_fp32, out_dir / fp_export.DECODER_FILE, "z", z, method=method,
                            percentile=percentile, exclude=decoder_exclude, activations=activations,
                            placement=placement, reduce_range=reduce_range)
    if target == "tensorrt":
        problems = [p for part in (fp_export.ENCODER_FILE, fp_export.DECODER_FILE)
                    for p in check_tensorrt_qdq(out_dir / part)]
        if problems:
            raise OnnxQuantError("graph is not TensorRT-valid explicit quantization: " + "; ".join(problems))
    save_quantized(quantize_(copy.deepcopy(model), Int8Config()), out_dir / INT8_STORAGE_FILE)
    onnx_bytes = {p: (out_dir / p).stat().st_size for p in fp32_bytes}
    extra = {
        "latent_dim": int(model.latent_dim),
        "torch_weights": INT8_STORAGE_FILE, "torch_weights_format": "sage_ros.quantized",
        "quantization": {
            "scheme": "int8-qdq-static",
            "weights": "int8 per-output-channel symmetric" + (f" ({REDUCE_RANGE_WHY})" if reduce_range else ""),
            "activations": INT8_ACTIVATIONS[activations][2], "qdq_placement": placement,
            "target": target or ("cpu" if activations == "uint8" else "cpu+tensorrt"), "calibration_method": method,
            **({"calibration_percentile": percentile} if method == "percentile" else {}),
            "calibration_images": int(len(x)), "calibration_source": calibration_source,
            "float_nodes": exclude + decoder_exclude, "onnx_bytes": onnx_bytes, "onnx_bytes_fp32": fp32_bytes,
            "onnx_ratio_vs_fp32": sum(fp32_bytes.values()) / sum(onnx_bytes.values()),
        },
    }
    return write_quantized_bundle(model, out_dir, name=name, precision="int8", metrics=metrics,
                                  created_by=created_by, extra=extra)


def write_quantized_bundle(model: nn.Module, out_dir: Path, *, name: str, precision: str, metrics, created_by: str,
                           extra: dict) -> Path:
    """bundle.json of an INT8 or INT4 export (the puzzle's codebook size added to `extra`), hashing every file."""
    if fp_export.architecture_of(model) == "VisionPuzzleVAE":
        extra["num_codes"] = int(model.num_codes)
    fp_export.write_bundle(out_dir, name=name, architecture=fp_export.architecture_of(model), precision=precision,
                           input_spec=fp_export.input_spec_of(model), latent_shape=fp_export.latent_shape_of(model),
                           metrics=metrics, created_by=created_by, extra=extra)
    return out_dir
