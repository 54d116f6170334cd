"""Model level: encode latency (batch 1) and throughput (batch 8/32) of every bundle x backend x threads.

Backends: onnxruntime CPU (the deployed path) and torch eager fp32 of the same architecture (the baseline: how
the research ran it), each with 1 thread and all threads. Every configuration of one bundle runs in one child
process that imports only what that backend needs, so the child's peak RSS (ru_maxrss) is the memory a process
running this bundle needs (an onnxruntime child never imports torch). Speed ratios are taken against the torch
eager fp32 child of the same architecture at the same batch and thread count, measured in the same run.

Input is float32 NCHW in the bundle's range; decoding/resizing frames is measured at node level (node_level.py).

    python bench/model_level.py --out bench/results/model_level.json [--quick] [--peak bench/results/peak.json]
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import harness
from bundles import bundles_for_bench, describe

BATCHES = (1, 8, 32)


def _budget(batch: int, quick: bool) -> dict:
    """Repeats per configuration: many for fast batch-1 calls, few for slow big batches (time-capped)."""
    if quick:
        return {"repeats": 5, "warmup": 1, "max_time_s": 1.0}
    return {"repeats": 30 if batch == 1 else 10, "warmup": 3, "min_time_s": 1.0 if batch == 1 else 0.5,
            "max_time_s": 4.0}


def _input(meta_input: dict, batch: int):
    import numpy as np

    lo, hi = meta_input["range"]
    rng = np.random.default_rng(0)
    shape = (batch, 3, int(meta_input["height"]), int(meta_input["width"]))
    return (rng.random(shape, dtype=np.float32) * (hi - lo) + lo).astype(np.float32)


def _row(backend: str, threads: int, batch: int, stats: dict) -> dict:
    row = {"backend": backend, "threads": threads, "batch": batch, **stats}
    if stats.get("median_ms"):
        row["frames_per_s"] = batch / (stats["median_ms"] * 1e-3)
        row["ms_per_frame"] = stats["median_ms"] / batch
    return row


def child_onnxruntime(bundle_dir: Path, thread_counts, quick: bool) -> dict:
    """All onnxruntime configurations of one bundle (no torch in this process)."""
    import onnxruntime as ort

    info = describe(bundle_dir)
    rows = []
    for threads in thread_counts:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = ort.InferenceSession(str(bundle_dir / "encoder.onnx"), options,
                                           providers=["CPUExecutionProvider"])
        except Exception as exc:  # a precision this CPU provider cannot run: record it, keep going
            rows.append({"backend": "onnxruntime", "threads": threads, "error": f"{type(exc).__name__}: {exc}"})
            continue
        for batch in BATCHES:
            feed = {"image": _input(info["input"], batch)}
            stats = harness.time_calls(lambda: session.run(None, feed), **_budget(batch, quick))
            rows.append(_row("onnxruntime", threads, batch, stats))
    rows.extend(_runtime_backend_rows(bundle_dir, info, quick))
    return {"rows": rows, "torch_loaded": "torch" in sys.modules}


def _runtime_backend_rows(bundle_dir: Path, info: dict, quick: bool) -> list[dict]:
    """The product's own wrapper (sage_ros.runtime.backends) at batch 1: its overhead over a bare session."""
    try:
        from sage_ros.runtime.backends import make_backend
        from sage_ros.runtime.bundle import load_bundle
    except ImportError as exc:
        return [{"backend": "sage_ros.runtime onnxruntime", "error": f"not available: {exc}"}]
    try:
        backend = make_backend(load_bundle(bundle_dir), "onnxruntime")
        backend.warmup()
        batch = _input(info["input"], 1)
        stats = harness.time_calls(lambda: backend.encode(batch), **_budget(1, quick))
        backend.close()
        return [_row("sage_ros.runtime onnxruntime (default threads)", 0, 1, stats)]
    except Exception as exc:  # report, never hide: the wrapper failing is a finding
        return [{"backend": "sage_ros.runtime onnxruntime", "error": f"{type(exc).__name__}: {exc}"}]


def child_torch(architecture: str, latent_dim: int, meta_input: dict, thread_counts, quick: bool) -> dict:
    """Torch eager fp32 encode of a seeded model of `architecture` (speed does not depend on weight values)."""
    import torch

    from sage_ros.models import build_model

    torch.manual_seed(0)
    model = build_model(architecture, latent_dim).eval()
    rows = []
    for threads in thread_counts:
        torch.set_num_threads(threads)
        for batch in BATCHES:
            x = torch.from_numpy(_input(meta_input, batch))

            def encode():
                with torch.inference_mode():
                    return model.encode(x)

            rows.append(_row("torch eager fp32", threads, batch, harness.time_calls(encode, **_budget(batch, quick))))
    return {"rows": rows, "torch_loaded": True}


def run_child(args: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--out", os.devnull, *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        return {"rows": [], "error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def add_ratios_and_peak(rows: list[dict], baseline: list[dict], flops: float | None, peak: dict | None) -> None:
    """speedup_vs_torch = torch eager time / this time (same threads, same batch); share of CPU peak."""
    base = {(r["threads"], r["batch"]): r for r in baseline if "error" not in r}
    for row in rows:
        if "error" in row or not row.get("median_ms"):
            continue
        torch_row = base.get((row["threads"], row["batch"])) or base.get((1, row["batch"])) or {}
        row["speedup_vs_torch_eager"] = harness.ratio(torch_row.get("median_ms"), row["median_ms"])
        # best-of ratio: on a shared machine the fastest call is the least disturbed one
        row["speedup_vs_torch_eager_min"] = harness.ratio(torch_row.get("min_ms"), row["min_ms"])
        if flops and peak:
            key = "1" if row["threads"] == 1 else "all"
            gflops = flops * row["batch"] / (row["median_ms"] * 1e-3) / 1e9
            row["gflops"] = gflops
            row["share_of_peak"] = gflops / peak[key]


def encode_flops(architecture: str, latent_dim: int) -> float | None:
    """FLOPs of one batch-1 encode, from bench/flops.py's counter (None if torch is unavailable)."""
    try:
        from flops import model_cost

        return float(model_cost(architecture, latent_dim)["encode"]["flops"])
    except Exception:
        return None


def main() -> int:
    parser = harness.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--peak", type=Path, help="peak.json of this run (for the share-of-peak column)")
    parser.add_argument("--child", choices=("onnxruntime", "torch"))
    parser.add_argument("--bundle", type=Path)
    parser.add_argument("--threads", type=int, nargs="+")
    args = parser.parse_args()
    all_threads = len(os.sched_getaffinity(0))
    thread_counts = args.threads or sorted({1, all_threads})
    if args.child:
        info = describe(args.bundle)
        if args.child == "onnxruntime":
            result = child_onnxruntime(args.bundle, thread_counts, args.quick)
        else:
            result = child_torch(info["architecture"], info["latent_dim"], info["input"], thread_counts, args.quick)
        result["peak_rss_mb"] = harness.peak_rss_mb()
        print(json.dumps(result))
        return 0

    started = time.perf_counter()
    peak = json.loads(args.peak.read_text())["peak_gflops"] if args.peak and args.peak.exists() else None
    results, baselines = [], {}
    for bundle_dir in bundles_for_bench(args.quick):
        info = describe(bundle_dir)
        key = (info["architecture"], info["latent_dim"])
        child_args = ["--bundle", str(bundle_dir), "--threads", *map(str, thread_counts)] + \
            (["--quick"] if args.quick else [])
        if key not in baselines:
            baselines[key] = run_child(["--child", "torch", *child_args])
            baselines[key]["flops"] = encode_flops(*key)
            print(f"torch eager {key}: peak RSS {baselines[key].get('peak_rss_mb', 0):.0f} MB", flush=True)
        ort = run_child(["--child", "onnxruntime", *child_args])
        add_ratios_and_peak(ort["rows"], baselines[key]["rows"], baselines[key]["flops"], peak)
        results.append({**info, "onnxruntime": ort})
        b1 = [r for r in ort["rows"] if r.get("batch") == 1 and r.get("threads") == 1 and "error" not in r]
        if b1:
            print(f"{info['name']}: ort 1 thread batch 1 {b1[0]['median_ms']:.3f} ms "
                  f"(x{b1[0].get('speedup_vs_torch_eager') or 0:.1f} vs torch), peak RSS {ort['peak_rss_mb']:.0f} MB",
                  flush=True)
    for key, base in baselines.items():
        add_ratios_and_peak(base["rows"], base["rows"], base["flops"], peak)
    harness.write_result(args.out, "model_level", {
        "what": "encoder only, float32 NCHW input; median/p99 over repeats; speedup = torch eager fp32 time / time "
                "(same threads and batch, same run); share_of_peak = model GFLOP/s / matmul GFLOP/s (peak.json)",
        "peak_gflops": peak,
        "bundles": results,
        "torch_baselines": [{"architecture": a, "latent_dim": l, **b} for (a, l), b in baselines.items()],
    }, started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
