"""`sage-ros export`: a model bundle (encoder.onnx + decoder.onnx + bundle.json) at one of four precisions.

    sage-ros export --run runs/t16 --precision fp32 --out models/tinyvae16_fp32
    sage-ros export --run runs/t16 --precision int8 --calibrate-method percentile --out models/tinyvae16_int8
    sage-ros export --run runs/t16 --precision int4 --group-size 64 --out models/tinyvae16_int4

fp32 / fp16: sage_ros.compression.export.export_bundle. int8: static QDQ (onnxruntime quantize_static,
per-channel, symmetric) calibrated on --calibration-split (val by default, never the test split).
int4: INT4 weights in the graph for the Linear layers (opset-21 blocked DequantizeLinear -> MatMul), convolutions
storage-only (see onnx_int4.py).

After writing, the bundle is verified (the RUNTIME engineer's check, kept): fp32/fp16 are loaded back through
sage_ros.runtime and onnxruntime is compared with the torch reference on real photographs within
docs/runtime.md's tolerances; int4 graphs are compared with the torch INT4 model rebuilt from the bundle's
storage file (same integers, same scales) within INT4_MAX_REL_L2; int8 QDQ graphs have no torch twin, so their
check is a floor on mu cosine / code agreement vs the float model. With --evaluate, the bundle is also run
with onnxruntime on the held-out split against the float torch model and those numbers are merged into
bundle.json `metrics` (next to any --metrics file).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from sage_ros.usage import existing_file, new_output

from .quantize_cmd import (add_calibration_arguments, add_data_arguments, add_model_argument, add_progress_argument,
                           calibration_images, calibration_tensor, created_by, load_float_model)

# an --out directory is replaced whole (sage_ros.atomic.atomic_output_dir): no stale file of an earlier export stays
CACHE_DIR_NAME = ".engine_cache"  # runtime/backends/engine_cache.py: a device's TensorRT engines, kept across exports
# Same thresholds as test/test_runtime_backends.py (docs/runtime.md "Tolerances").
MAX_ABS_DIFF = {"fp32": 1e-4, "fp16": 2e-2}
MIN_CODE_AGREEMENT = {"fp32": 0.999, "fp16": 0.95, "int8": 0.5, "int4": 0.95}
# int4 graph vs torch INT4 model: the weights are identical; onnxruntime's CPU MatMulNBits (the fused
# DQ->MatMul) quantizes activations to int8 per block (accuracy level 4), which alone moves mu this much.
INT4_MAX_REL_L2 = 0.05
INT8_MIN_COSINE = 0.9


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8", "int4"), required=True)
    parser.add_argument("--out", type=new_output, required=True, help="bundle directory, e.g. models/<name>")
    parser.add_argument("--name", default=None, help="bundle name (default: the --out directory name)")
    parser.add_argument("--opset", type=int, default=17, help="fp32/fp16/int8 graphs (int4 graphs are opset 21)")
    parser.add_argument("--metrics", type=existing_file, default=None, help="JSON file of held-out metrics to embed")
    parser.add_argument("--no-verify", action="store_true", help="skip the onnxruntime-vs-torch check")
    parser.add_argument("--progress-dir", "--run-dir", dest="progress_dir", type=Path, default=None,
                        help="write progress.json here, not into the bundle, whose files are all hashed "
                             "(--run-dir: the name compression_node jobs pass)")
    add_calibration_arguments(parser, "calibration (int8, and int4 with --rounding gptq)")
    g = parser.add_argument_group("int8")
    g.add_argument("--calibrate-method", choices=("minmax", "entropy", "percentile"), default="minmax")
    g.add_argument("--percentile", type=float, default=99.999, help="for --calibrate-method percentile")
    g.add_argument("--int8-activations", choices=("int8", "uint8"), default="int8",
                   help="int8: symmetric (TensorRT and CPU); uint8: asymmetric, CPU-only bundles, faster on "
                        "onnxruntime CPU (Relu folds into the quantization; see BENCHMARKS.md)")
    g.add_argument("--int8-target", choices=("cpu", "tensorrt"), default=None,
                   help="name the deployment target instead: cpu = uint8 asymmetric activations, onnxruntime's "
                        "Q/DQ placement (Relu folded); tensorrt = symmetric int8, Q/DQ on layer inputs only, float "
                        "biases, checked TensorRT-valid (overrides --int8-activations)")
    g = parser.add_argument_group("int4")
    g.add_argument("--group-size", type=int, default=64)
    g.add_argument("--rounding", choices=("minmax", "mse", "gptq"), default="mse")
    g.add_argument("--conv-scheme", choices=("int4", "int8"), default="int4",
                   help="storage precision of the convolutions (Linear layers are INT4 in the graph)")
    parser.add_argument("--evaluate", action="store_true",
                        help="measure the bundle on held-out data (--data/--split) into bundle.json metrics")
    add_progress_argument(parser)
    add_data_arguments(parser)


def _photographs() -> list[np.ndarray]:
    from skimage import data

    return [data.astronaut(), data.chelsea(), data.coffee(), np.ascontiguousarray(data.rocket())]


def verify(bundle_dir: Path) -> dict:
    """fp32/fp16: onnxruntime vs torch through sage_ros.runtime (load_bundle checks checksums and shapes)."""
    from sage_ros.runtime.backends import make_backend
    from sage_ros.runtime.bundle import load_bundle
    from sage_ros.runtime.preprocess import Preprocessor

    bundle = load_bundle(bundle_dir)
    inputs = Preprocessor.from_bundle(bundle, "center")(_photographs())
    with make_backend(bundle, "onnxruntime") as ort_backend, make_backend(bundle, "torch") as torch_backend:
        got, ref = ort_backend.encode(inputs), torch_backend.encode(inputs)
    if bundle.is_vq:
        agreement = float((got["codes"] == ref["codes"]).mean())
        ok = agreement >= MIN_CODE_AGREEMENT[bundle.precision]
        return {"code_agreement": agreement, "ok": ok}
    scale = max(1.0, float(np.abs(ref["mu"]).max())) if bundle.precision == "fp16" else 1.0
    diff = max(float(np.abs(got[k] - ref[k]).max()) for k in ("mu", "logvar"))
    return {"max_abs_diff": diff, "ok": diff <= MAX_ABS_DIFF[bundle.precision] * scale}


def verify_quantized(bundle_dir: Path, float_model) -> dict:
    """int4: graph vs the torch INT4 model from the storage file; int8: graph vs the float model (a floor)."""
    import cv2

    from sage_ros.runtime.bundle import load_bundle

    from .evaluate import evaluate_pair
    from .onnx_int4 import torch_int4_model

    bundle = load_bundle(bundle_dir)  # checksums + graph io, as the robot will load it
    size = bundle.input_size[0]
    images = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in _photographs()])
    if bundle.precision == "int4":
        result = evaluate_pair(torch_int4_model(bundle_dir), bundle_dir, images)
        if bundle.is_vq:
            return {"code_agreement": result["code_agreement"] / 100,
                    "ok": result["code_agreement"] / 100 >= MIN_CODE_AGREEMENT["int4"]}
        return {"mu_rel_l2_vs_torch_int4": result["mu_rel_l2"], "ok": result["mu_rel_l2"] <= INT4_MAX_REL_L2}
    result = evaluate_pair(float_model, bundle_dir, images)
    if bundle.is_vq:
        return {"code_agreement": result["code_agreement"] / 100,
                "ok": result["code_agreement"] / 100 >= MIN_CODE_AGREEMENT["int8"]}
    return {"mu_cosine_vs_float": result["mu_cosine"], "ok": result["mu_cosine"] >= INT8_MIN_COSINE}


def export_any(model, out: Path, args) -> Path:
    from . import export as fp_export
    from .onnx_int4 import export_int4_bundle
    from .onnx_quant import export_int8_bundle
    from .quantize import Int4Config

    name = args.name or out.name
    cmd = created_by(args, "export")
    metrics = json.loads(args.metrics.read_text()) if args.metrics else {}
    if args.precision in ("fp32", "fp16"):
        return fp_export.export_bundle(model, out, name=name, precision=args.precision, created_by=cmd,
                                       opset=args.opset, metrics=metrics)
    if args.precision == "int8":
        cal = calibration_images(args, model.image_size)
        return export_int8_bundle(model, out, name=name, calibration_images=cal, method=args.calibrate_method,
                                  percentile=args.percentile, created_by=cmd, metrics=metrics,
                                  calibration_source=f"{args.calibration}/{args.calibration_split}",
                                  activations=getattr(args, "int8_activations", "int8"),
                                  target=getattr(args, "int8_target", None))
    calibration = calibration_tensor(args, model) if args.rounding == "gptq" else None
    return export_int4_bundle(model, out, name=name, created_by=cmd, metrics=metrics, calibration=calibration,
                              config=Int4Config(group_size=args.group_size, rounding=args.rounding,
                                                conv_scheme=args.conv_scheme))


def add_metrics(bundle_dir: Path, metrics: dict) -> None:
    """Merge held-out metrics into bundle.json (the sha256 list covers the other files, not bundle.json)."""
    from sage_ros.atomic import atomic_write_json

    path = bundle_dir / "bundle.json"
    meta = json.loads(path.read_text())
    meta["metrics"] = {**meta.get("metrics", {}), **metrics}
    atomic_write_json(path, meta)


def run(args: argparse.Namespace) -> int:
    try:
        return _export(args)
    except VerifyFailed:
        print(f"onnxruntime and torch disagree beyond the documented tolerance; {args.out} not replaced",
              file=sys.stderr)
        return 1


class VerifyFailed(RuntimeError):
    """The written bundle disagrees with torch beyond the tolerance: it does not replace --out."""


def _export(args: argparse.Namespace) -> int:
    from sage_ros.atomic import atomic_output_dir

    from .evaluate import evaluate_pair
    from .phases import PhaseBar
    from .progress import ProgressWriter
    from .quantize_cmd import load_images_from_args

    model = load_float_model(args.run)  # before --out exists: a wrong --run leaves nothing behind
    out = Path(args.out)
    args.name = args.name or out.name  # written in a staging directory of another name (atomic_output_dir)
    progress = ProgressWriter(args.progress_dir or out, "export", enabled=args.progress_dir is not None)
    # --out is replaced whole once the new bundle is written and verified: an encoder using the old bundle keeps a
    # complete one there until then, and a failed or cancelled export leaves it as it was
    with progress.fail_on_error(), atomic_output_dir(out, carry=(CACHE_DIR_NAME,)) as staging, \
            PhaseBar(progress, 3, "export", enabled=not args.no_progress) as bar:
        bar.phase(f"exporting {args.precision}")
        export_any(model, staging, args)
        print(f"wrote {out} ({type(model).__name__}, {args.precision})")
        bar.phase("verifying")
        if not args.no_verify:
            result = verify(staging) if args.precision in ("fp32", "fp16") else verify_quantized(staging, model)
            print(f"verify: {result}")
            if not result["ok"]:
                raise VerifyFailed(f"verify failed: {result}")
        if args.evaluate:
            bar.phase(f"evaluating on {args.data}/{args.split}")
            images = load_images_from_args(args, model.image_size)
            result = evaluate_pair(model, staging, images, args.batch_size)
            add_metrics(staging, {"data": f"{args.data}/{args.split}", "runtime": "onnxruntime CPU (default options)",
                                  "vs": "float torch model", **result})
        progress.finish()
    print(f"bundle: {out}")
    return 0
