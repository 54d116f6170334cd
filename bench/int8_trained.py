"""INT8 bundles of the *trained* shipped puzzle model, one per deployment target, against its fp32 bundle:
held-out code agreement / PSNR (`evaluate_pair` against the float torch model rebuilt from the fp32 bundle's
model.safetensors), encoder speed (onnxruntime CPU, 1 thread, batch 1, real test crops, each int8 bundle interleaved
with fp32 alone, order swapped every round: see interleaved_speed), and whether each graph
is valid TensorRT explicit quantization (onnx_quant.check_tensorrt_qdq: int8 symmetric Q/DQ, no INT32 bias DQ).

    python bench/int8_trained.py --out bench/results/int8_trained.json [--fp32 models/puzzle_l64_fp32]

Bundles measured: every models/<fp32 name with fp32 -> int8*>/ beside the fp32 bundle (e.g. puzzle_l64_int8_cpu,
puzzle_l64_int8_tensorrt). The CPU target must reach >= 1.8x fp32 at >= 98 % code agreement; the TensorRT
target is not meant to be fast on onnxruntime CPU (its Q/DQ placement is TensorRT's) and is listed for quality.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

import harness


def float_model(bundle_dir: Path):
    from safetensors.torch import load_file

    from sage_ros.models import build_model

    meta = json.loads((bundle_dir / "bundle.json").read_text())
    model = build_model(meta["architecture"], int(meta["latent_dim"]))
    model.load_state_dict(load_file(str(bundle_dir / meta.get("torch_weights", "model.safetensors"))))
    return model.eval()


def interleaved_speed(bundles: dict[str, Path], rounds: int, images_uint8: np.ndarray, warmup: int = 20) -> dict:
    """Encoder latency of each int8 bundle against the fp32 bundle (the first in `bundles`), onnxruntime CPU,
    1 thread, batch 1, on real images (the test crops the quality is measured on, cycled).

    Each int8 bundle is timed in a pair with fp32 only, interleaved (one call of each per round, the order swapped
    every round, so neither always runs right after the other or after a third, larger graph), after `warmup`
    untimed calls each. The speed-up is the median over rounds of fp32 time / int8 time of the same round (both
    calls see the same moment's load), with the ratio of medians and of minima beside it. Why not the earlier
    way (one random input, 3 warm-up calls, fp32 always first and always right after the TensorRT graph): on this
    loaded machine that configuration read ~0.2x higher than the pairwise one (bench/results/int8_trained.json
    `flattering_config`)."""
    import onnxruntime as ort

    def session(bundle_dir: Path):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        return ort.InferenceSession(str(bundle_dir / "encoder.onnx"), options, providers=["CPUExecutionProvider"])

    labels = list(bundles)
    meta = json.loads((bundles[labels[0]] / "bundle.json").read_text())
    lo, hi = meta["input"]["range"]
    xs = [np.ascontiguousarray(im.transpose(2, 0, 1)[None].astype(np.float32) / 255.0 * (hi - lo) + lo)
          for im in images_uint8]
    fp32 = session(bundles[labels[0]])
    out, fp32_samples = {}, []
    for label in labels[1:]:
        other = session(bundles[label])
        pair = {labels[0]: fp32, label: other}
        for s in pair.values():
            for i in range(warmup):
                s.run(None, {"image": xs[i % len(xs)]})
        samples = {name: [] for name in pair}
        for r in range(rounds):
            x = xs[r % len(xs)]
            for name in (list(pair) if r % 2 == 0 else list(pair)[::-1]):
                t0 = time.perf_counter()
                pair[name].run(None, {"image": x})
                samples[name].append(time.perf_counter() - t0)
        base, mine = np.array(samples[labels[0]]), np.array(samples[label])
        fp32_samples += samples[labels[0]]
        out[label] = {**harness.summarize(mine), "fp32": harness.summarize(base),
                      "speedup_vs_fp32": float(np.median(base / mine)),
                      "speedup_ratio_of_medians": float(np.median(base) / np.median(mine)),
                      "speedup_vs_fp32_min": float(base.min() / mine.min())}
    # the fp32 row (all its paired calls) first, as bench/report.py lists it
    return {labels[0]: {**harness.summarize(fp32_samples), "speedup_vs_fp32": 1.0, "speedup_ratio_of_medians": 1.0,
                        "speedup_vs_fp32_min": 1.0}, **out}


def flattering_config(bundles: dict[str, Path], rounds: int) -> dict:
    """The earlier measurement, kept to show the difference: one random input, 3 warm-up calls, all bundles in
    one fixed order per round. Returns the ratio of medians against fp32 per bundle."""
    import onnxruntime as ort

    sessions, x = {}, None
    for label, bundle_dir in bundles.items():
        meta = json.loads((bundle_dir / "bundle.json").read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        sessions[label] = ort.InferenceSession(str(bundle_dir / "encoder.onnx"), options,
                                               providers=["CPUExecutionProvider"])
        lo, hi = meta["input"]["range"]
        size = int(meta["input"]["height"])
        x = np.random.default_rng(0).uniform(lo, hi, (1, 3, size, size)).astype(np.float32)
    for session in sessions.values():
        for _ in range(3):
            session.run(None, {"image": x})
    samples = {label: [] for label in sessions}
    for _ in range(rounds):
        for label, session in sessions.items():
            t0 = time.perf_counter()
            session.run(None, {"image": x})
            samples[label].append(time.perf_counter() - t0)
    base = np.median(samples[next(iter(samples))])
    return {label: float(base / np.median(s)) for label, s in samples.items()}


def cpu_simd_flags() -> list[str]:
    """AVX / AMX / VNNI flags: onnxruntime's int8 kernels differ with them (VNNI: u8s8 dot products without int16
    saturation and faster; AVX2 only: VPMADDUBSW, slower and saturating), so int8 speed-ups and code agreement
    from machines with and without VNNI are not comparable."""
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return []
    return sorted(f for f in flags if f.startswith(("avx", "amx")) or "vnni" in f)


def int8_siblings(fp32: Path) -> list[Path]:
    stem = fp32.name.replace("fp32", "int8")
    return sorted(p.parent for p in fp32.parent.glob(f"{stem}*/bundle.json"))


def main() -> int:
    parser = harness.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--fp32", type=Path, default=harness.REPO / "models" / "puzzle_l64_fp32")
    parser.add_argument("--int8", type=Path, action="append", default=None,
                        help="int8 bundle(s) to measure (default: the fp32 bundle's int8* siblings)")
    parser.add_argument("--test-images", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    started = time.perf_counter()
    from sage_ros.compression.evaluate import evaluate_pair
    from sage_ros.compression.onnx_quant import check_tensorrt_qdq
    from sage_ros.data import load_split

    if not (args.fp32 / "bundle.json").exists():  # no shipped model yet: nothing trained to measure
        harness.write_result(args.out, "int8_trained", {"error": f"no bundle at {args.fp32}"}, started=started)
        return 0
    model = float_model(args.fp32)
    int8s = args.int8 or int8_siblings(args.fp32)
    test = load_split(model.image_size, "test")[:32 if args.quick else args.test_images]
    quality, targets = {}, {}
    for bundle in [args.fp32, *int8s]:
        label = "fp32" if bundle == args.fp32 else bundle.name
        result = evaluate_pair(model, str(bundle), test, batch_size=64)
        quality[label] = {k: result.get(k) for k in ("code_agreement", "psnr", "ssim", "codes_used",
                                                     "code_perplexity") if k in result}
        meta = json.loads((bundle / "bundle.json").read_text())
        q = meta.get("quantization", {})
        problems = [p for part in ("encoder.onnx", "decoder.onnx") for p in check_tensorrt_qdq(bundle / part)] \
            if meta["precision"] == "int8" else []
        targets[label] = {"target": q.get("target"), "activations": q.get("activations"),
                          "qdq_placement": q.get("qdq_placement"),
                          "tensorrt_valid": (not problems) if meta["precision"] == "int8" else None,
                          "tensorrt_problems": problems[:5]}
        print(f"{label}: {quality[label]} {targets[label]['target']} trt-valid={targets[label]['tensorrt_valid']}",
              flush=True)
    bundles = {"fp32": args.fp32, **{b.name: b for b in int8s}}
    import os

    load_before = os.getloadavg()
    speed = interleaved_speed(bundles, 20 if args.quick else args.rounds, test[:64])
    flattering = flattering_config(bundles, 20 if args.quick else args.rounds)
    load_after = os.getloadavg()
    for label, row in speed.items():
        print(f"{label}: {row['median_ms']:.2f} ms median, x{row['speedup_vs_fp32']:.2f} per-round median "
              f"(ratio of medians x{row['speedup_ratio_of_medians']:.2f}, best-of x{row['speedup_vs_fp32_min']:.2f}); "
              f"the earlier configuration read x{flattering[label]:.2f}", flush=True)
    harness.write_result(args.out, "int8_trained", {
        "what": "trained shipped model: held-out quality (evaluate_pair vs the float torch model) and interleaved "
                "encoder speed, onnxruntime CPU 1 thread batch 1, per int8 target bundle",
        "fp32_bundle": str(args.fp32), "test_images": len(test), "quality": quality, "targets": targets,
        "speed": speed, "speed_input": "real: the first 64 test crops, cycled; pairwise with fp32, order swapped "
                                       "every round, 20 warm-up calls, 1 thread, batch 1",
        "flattering_config": flattering, "load_avg_before_after": [load_before[0], load_after[0]],
        "cpu_simd_flags": cpu_simd_flags()},
        started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
