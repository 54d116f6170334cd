"""Attainable fp32 peak of this CPU: GFLOP/s of a large square matmul, numpy and torch, 1 thread and all threads.

This is the denominator of every "share of peak" figure: a model's FLOPs / its measured time, divided by what a
large matmul reaches on the same cores in the same run. Thread counts are fixed per child process through the
BLAS/OpenMP environment variables, because numpy's BLAS reads them once at import.

    python bench/peak.py --out bench/results/peak.json [--quick]
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import harness

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def measure_child(library: str, n: int, repeats: int) -> dict:
    """Run in a child whose thread variables are already set; time n x n @ n x n float32."""
    if library == "torch":
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        a, b = torch.rand(n, n), torch.rand(n, n)
        fn = lambda: torch.mm(a, b)  # noqa: E731
    else:
        import numpy as np

        rng = np.random.default_rng(0)
        a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
        fn = lambda: a @ b  # noqa: E731
    stats = harness.time_calls(fn, repeats=repeats, warmup=2, max_time_s=20)
    flops = 2.0 * n ** 3
    stats["gflops_median"] = flops / (stats["median_ms"] * 1e-3) / 1e9
    stats["gflops_best"] = flops / (stats["min_ms"] * 1e-3) / 1e9
    return stats


def run_child(library: str, threads: int, n: int, repeats: int) -> dict:
    env = dict(os.environ, **{var: str(threads) for var in THREAD_VARS})
    cmd = [sys.executable, __file__, "--child", library, "--threads", str(threads), "--n", str(n),
           "--repeats", str(repeats), "--out", os.devnull]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = harness.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--child", choices=("numpy", "torch"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    n = args.n or (256 if args.quick else 2048)
    repeats = args.repeats or (3 if args.quick else 10)
    if args.child:
        print(json.dumps(measure_child(args.child, n, repeats)))
        return 0
    started = time.perf_counter()
    all_threads = len(os.sched_getaffinity(0))
    rows = []
    for threads in sorted({1, all_threads}):
        for library in ("numpy", "torch"):
            stats = run_child(library, threads, n, repeats)
            rows.append({"library": library, "threads": threads, "n": n, **stats})
            print(f"peak {library:5s} {threads} thread(s) n={n}: {stats['gflops_median']:.1f} GFLOP/s "
                  f"(best {stats['gflops_best']:.1f})", flush=True)
    best = {t: max(r["gflops_median"] for r in rows if r["threads"] == t) for t in {r["threads"] for r in rows}}
    harness.write_result(args.out, "peak", {
        "what": "float32 square matmul C = A @ B, FLOPs = 2 n^3; median over repeats",
        "rows": rows,
        "peak_gflops": {"1": best[1], "all": best[all_threads], "all_threads": all_threads},
    }, started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
