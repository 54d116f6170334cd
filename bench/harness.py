"""Shared benchmark plumbing: timing statistics, same-run ratios, machine description, result files.

Every benchmark script in bench/ is a small program: `python bench/<name>.py --out FILE [--quick]`. It measures,
then calls `write_result(path, name, payload)`, which stamps the payload with the machine, versions and exact
command. bench/report.py turns the result files into the generated section of BENCHMARKS.md.

Why statistics by hand: numpy's percentile is all we need; pytest-benchmark/pyperf want to own the process.
"""
from __future__ import annotations

import datetime as _dt
import gc
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO))  # scripts run as `python bench/x.py` from a checkout

from sage_ros.atomic import atomic_write_json, atomic_write_text  # noqa: E402


def summarize(samples_s) -> dict:
    """Median / p99 / min / mean of per-call times in seconds -> milliseconds, plus the sample count."""
    ms = np.asarray(samples_s, dtype=np.float64) * 1e3
    if ms.size == 0:
        return {"samples": 0, "median_ms": None, "p99_ms": None, "min_ms": None, "mean_ms": None}
    return {"samples": int(ms.size), "median_ms": float(np.median(ms)), "p99_ms": float(np.percentile(ms, 99)),
            "min_ms": float(ms.min()), "mean_ms": float(ms.mean())}


def time_calls(fn: Callable[[], object], *, repeats: int, warmup: int = 3, min_time_s: float = 0.0,
               max_time_s: float = 30.0) -> dict:
    """Call fn() `warmup` times untimed, then time each of at least `repeats` calls (more until min_time_s).

    The garbage collector is paused while timing (it would add its pauses to random calls) and stopped after
    max_time_s of timing whatever the count, so one slow configuration cannot eat the whole bench budget.
    """
    for _ in range(warmup):
        fn()
    samples = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
            elapsed = time.perf_counter() - start
            if (len(samples) >= repeats and elapsed >= min_time_s) or elapsed >= max_time_s:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return summarize(samples)


def ratio(value: float | None, baseline: float | None) -> float | None:
    """value / baseline, None when either is missing (a ratio is only ever taken within one run)."""
    if value is None or baseline is None or baseline == 0:
        return None
    return float(value) / float(baseline)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module_name: str) -> str | None:
    """Version of an importable distribution without importing it (torch import costs seconds)."""
    from importlib import metadata

    for dist in (module_name, module_name.replace("_", "-")):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def machine() -> dict:
    """What ran the benchmark: CPU, cores, load, memory, OS, versions, git commit."""
    import psutil

    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in
                     ("numpy", "torch", "onnxruntime", "onnx", "opencv-python-headless", "rclpy", "psutil")},
        "rmw": os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp (default)"),
        "git_commit": _git_commit(),
    }


def command_line() -> str:
    """The exact command that produced a result, relative to the repository root where possible."""
    argv = [sys.executable, *sys.argv]
    rel = []
    for arg in argv:
        try:
            rel.append(str(Path(arg).resolve().relative_to(REPO)) if os.path.exists(arg) else arg)
        except ValueError:
            rel.append(arg)
    return shlex.join(rel)


def write_result(path: str | os.PathLike, name: str, payload: dict, *, started: float | None = None) -> Path:
    """Write one benchmark's result JSON atomically, stamped with machine + command + wall time."""
    path = Path(path)
    doc = {
        "benchmark": name,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
        "wall_s": round(time.perf_counter() - started, 2) if started is not None else None,
        "machine": machine(),
        **payload,
    }
    atomic_write_json(path, doc)
    return path


BEGIN = "<!-- BEGIN GENERATED: bench/report.py -->"
END = "<!-- END GENERATED: bench/report.py -->"


def replace_section(markdown_path: str | os.PathLike, body: str) -> None:
    """Replace the text between the BEGIN/END markers of markdown_path (append the markers if missing)."""
    markdown_path = Path(markdown_path)
    text = markdown_path.read_text() if markdown_path.exists() else ""
    block = f"{BEGIN}\n{body.rstrip()}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip() + ("\n\n" if text else "") + block + "\n"
    atomic_write_text(markdown_path, text)


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Not ru_maxrss: Linux carries that across fork+exec, so a
    child started by a parent that imported torch would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def base_parser(description: str):
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, required=True, help="result JSON to write")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (smoke test)")
    return parser
