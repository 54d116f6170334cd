"""INT8 activation scheme on a *trained* shipped model: rebuild the float model from a shipped fp32 bundle's
model.safetensors, export it with `export_int8_bundle(activations="uint8")` (calibrated on the bundled val split,
as `sage-ros export` does), then measure held-out code agreement (VisionPuzzleVAE) or mu cosine (TinyVAE) with
`evaluate_pair` against the float torch model, and encoder speed (onnxruntime, 1 thread, batch 1, interleaved)
against the shipped fp32 and int8 bundles.

    python bench/int8_trained.py --out bench/results/int8_trained.json [--fp32 models/puzzle_l64_fp32]
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

import harness

SCRATCH = harness.REPO / "runs" / "bench" / "int8_trained"


def float_model(bundle_dir: Path):
    from safetensors.torch import load_file

    from sage_ros.models import build_model

    meta = json.loads((bundle_dir / "bundle.json").read_text())
    model = build_model(meta["architecture"], int(meta["latent_dim"]))
    model.load_state_dict(load_file(str(bundle_dir / meta.get("torch_weights", "model.safetensors"))))
    return model.eval()


def interleaved_speed(bundles: dict[str, Path], rounds: int) -> dict:
    import onnxruntime as ort

    sessions, x = {}, None
    for label, bundle_dir in bundles.items():
        meta = json.loads((bundle_dir / "bundle.json").read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        sessions[label] = ort.InferenceSession(str(bundle_dir / "encoder.onnx"), options,
                                               providers=["CPUExecutionProvider"])
        lo, hi = meta["input"]["range"]
        size = int(meta["input"]["height"])
        x = np.random.default_rng(0).uniform(lo, hi, (1, 3, size, size)).astype(np.float32)
    samples = {label: [] for label in sessions}
    for _ in range(rounds):
        for label, session in sessions.items():
            t0 = time.perf_counter()
            session.run(None, {"image": x})
            samples[label].append(time.perf_counter() - t0)
    base = samples[next(iter(samples))]
    return {label: {**harness.summarize(s), "speedup_vs_fp32": float(np.median(base) / np.median(s)),
                    "speedup_vs_fp32_min": float(min(base) / min(s))} for label, s in samples.items()}


def main() -> int:
    parser = harness.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--fp32", type=Path, default=harness.REPO / "models" / "puzzle_l64_fp32")
    parser.add_argument("--int8", type=Path, default=None, help="shipped int8 bundle (default: *_int8 beside)")
    parser.add_argument("--test-images", type=int, default=400)
    args = parser.parse_args()
    started = time.perf_counter()
    from sage_ros.compression.evaluate import evaluate_pair
    from sage_ros.compression.onnx_quant import export_int8_bundle
    from sage_ros.data import load_split

    if not (args.fp32 / "bundle.json").exists():  # no shipped model yet: nothing trained to measure
        harness.write_result(args.out, "int8_trained", {"error": f"no bundle at {args.fp32}"}, started=started)
        return 0
    model = float_model(args.fp32)
    size = model.image_size
    shipped_int8 = args.int8 or args.fp32.with_name(args.fp32.name.replace("fp32", "int8"))
    out = SCRATCH / f"{args.fp32.name.replace('fp32', 'int8')}_uint8act"
    calibration = load_split(size, "val")[:64 if args.quick else 256]
    export_int8_bundle(model, out, name=out.name, calibration_images=calibration, activations="uint8",
                       created_by="bench/int8_trained.py", calibration_source=f"bundled val, {len(calibration)}")
    test = load_split(size, "test")[:32 if args.quick else args.test_images]
    quality = {}
    for label, bundle in (("shipped int8 (symmetric)", shipped_int8), ("int8 uint8 activations", out)):
        if bundle.exists():
            result = evaluate_pair(model, str(bundle), test, batch_size=64)
            quality[label] = {k: result.get(k) for k in ("code_agreement", "mu_cosine", "mu_rel_l2", "psnr", "ssim")
                              if k in result}
            print(f"{label}: {quality[label]}", flush=True)
    bundles = {"fp32": args.fp32, **({"shipped int8 (symmetric)": shipped_int8} if shipped_int8.exists() else {}),
               "int8 uint8 activations": out}
    speed = interleaved_speed(bundles, 20 if args.quick else 150)
    for label, row in speed.items():
        print(f"{label}: {row['median_ms']:.2f} ms median, x{row['speedup_vs_fp32']:.2f} (best-of "
              f"x{row['speedup_vs_fp32_min']:.2f}) vs fp32", flush=True)
    harness.write_result(args.out, "int8_trained", {
        "what": "trained shipped model: held-out quality (evaluate_pair vs the float torch model) and interleaved "
                "encoder speed, onnxruntime 1 thread batch 1", "fp32_bundle": str(args.fp32),
        "test_images": len(test), "quality": quality, "speed": speed}, started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
