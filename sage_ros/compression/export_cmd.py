"""`sage-ros export`: a trained model (run directory or .safetensors + .json) -> model bundle(s), verified.

    sage-ros export --model runs/t64 --out models/tinyvae64 --precision fp32
    sage-ros export --model runs/puzzle --out models/puzzle-fp16 --precision fp16 --metrics runs/puzzle/report.json

After writing, the bundle is loaded back (checksums, graph shapes) and onnxruntime is compared with the torch
reference on real photographs; the command fails if they disagree beyond docs/runtime.md's tolerances.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

# Same thresholds as test/test_runtime_backends.py (docs/runtime.md "Tolerances").
MAX_ABS_DIFF = {"fp32": 1e-4, "fp16": 2e-2}
MIN_CODE_AGREEMENT = {"fp32": 0.999, "fp16": 0.95}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path, help="run directory or model .safetensors")
    parser.add_argument("--out", required=True, type=Path, help="bundle directory to write")
    parser.add_argument("--name", default=None, help="bundle name (default: the --out folder name)")
    parser.add_argument("--precision", choices=("fp32", "fp16"), default="fp32")
    parser.add_argument("--metrics", type=Path, default=None, help="JSON file of held-out metrics to embed")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--no-verify", action="store_true", help="skip the onnxruntime-vs-torch check")


def verify(bundle_dir: Path) -> dict:
    """Load the bundle back and compare onnxruntime with torch on real photographs; returns the numbers."""
    from skimage import data

    from sage_ros.runtime.backends import make_backend
    from sage_ros.runtime.bundle import load_bundle
    from sage_ros.runtime.preprocess import Preprocessor

    bundle = load_bundle(bundle_dir)
    frames = [data.astronaut(), data.chelsea(), data.coffee(), np.ascontiguousarray(data.rocket())]
    inputs = Preprocessor.from_bundle(bundle, "center")(frames)
    with make_backend(bundle, "onnxruntime") as ort_backend, make_backend(bundle, "torch") as torch_backend:
        got, ref = ort_backend.encode(inputs), torch_backend.encode(inputs)
    if bundle.is_vq:
        agreement = float((got["codes"] == ref["codes"]).mean())
        ok = agreement >= MIN_CODE_AGREEMENT[bundle.precision]
        return {"code_agreement": agreement, "ok": ok}
    scale = max(1.0, float(np.abs(ref["mu"]).max())) if bundle.precision == "fp16" else 1.0
    diff = max(float(np.abs(got[k] - ref[k]).max()) for k in ("mu", "logvar"))
    return {"max_abs_diff": diff, "ok": diff <= MAX_ABS_DIFF[bundle.precision] * scale}


def run(args: argparse.Namespace) -> int:
    from sage_ros.compression.checkpoints import load_model
    from sage_ros.compression.export import export_bundle

    model = load_model(args.model)
    metrics = json.loads(args.metrics.read_text()) if args.metrics else {}
    created_by = "sage-ros " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    out = export_bundle(model, args.out, name=args.name or args.out.name, precision=args.precision,
                        metrics=metrics, created_by=created_by, opset=args.opset)
    print(f"wrote {out} ({type(model).__name__}, {args.precision})")
    if args.no_verify:
        return 0
    result = verify(out)
    print(f"verify: {result}")
    if not result["ok"]:
        print("onnxruntime and torch disagree beyond the documented tolerance", file=sys.stderr)
        return 1
    return 0
