"""Smoke runs of every benchmark with --quick: the code paths run end to end and the results hold together.

Each test runs the real script in its own process (as `make bench` does) on tiny sizes; < 60 s together.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
sys.path.insert(0, str(BENCH))


def run_script(name: str, out: Path, *extra: str, timeout: int = 240) -> dict:
    cmd = [sys.executable, str(BENCH / f"{name}.py"), "--out", str(out), "--quick", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(out.read_text())


def test_peak_and_flops_and_markdown(tmp_path):
    """run_all --quick on the two cheapest steps, then the generated markdown section names the machine."""
    md = tmp_path / "B.md"
    md.write_text("# Benchmarks\n\nkept\n")
    cmd = [sys.executable, str(BENCH / "run_all.py"), "--quick", "--only", "peak", "flops",
           "--results", str(tmp_path), "--markdown", str(md)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    peak = json.loads((tmp_path / "peak.json").read_text())
    assert {r["library"] for r in peak["rows"]} == {"numpy", "torch"}
    assert all(r["gflops_median"] > 0 for r in peak["rows"])
    text = md.read_text()
    assert text.startswith("# Benchmarks\n\nkept") and peak["machine"]["cpu_model"] in text
    assert "Jetson Orin Nano" in text


def test_flop_count_follows_the_architecture():
    """TinyVAE's two 4096 x L heads: encode FLOPs grow by exactly 2 * 2 * 4096 per latent dim."""
    from flops import model_cost

    small, large = model_cost("TinyVAE", 16), model_cost("TinyVAE", 64)
    assert large["encode"]["flops"] - small["encode"]["flops"] == 2 * 2 * 4096 * (64 - 16)
    assert large["params"] == 31_073 + 12_290 * 64
    fp32, int8 = (large["encode"]["bytes"][p]["layerwise"] for p in ("fp32", "int8"))
    assert int8 < fp32


def test_model_level_quick(tmp_path):
    doc = run_script("model_level", tmp_path / "model.json")
    bundle = doc["bundles"][0]
    rows = [r for r in bundle["onnxruntime"]["rows"] if r["backend"] == "onnxruntime"]
    assert {r["batch"] for r in rows} == {1, 8, 32}
    assert all(r["median_ms"] > 0 and r["speedup_vs_torch_eager"] > 0 for r in rows)
    assert bundle["onnxruntime"]["torch_loaded"] is False  # the onnxruntime child never imports torch
    assert bundle["bundle_bytes"] > bundle["encoder_bytes"] > 0
    assert doc["torch_baselines"][0]["rows"]


def test_node_level_quick(tmp_path):
    """Real DDS: pass-through and encoder node both return every frame at 30 Hz; the encoder has no torch."""
    doc = run_script("node_level", tmp_path / "node.json", timeout=300)
    groups = {g["kind"]: g for g in doc["groups"]}
    assert set(groups) == {"passthrough", "encoder"}
    for kind, group in groups.items():
        assert "error" not in group, group
        phase = group["phases"][0]
        assert phase["sent"] > 10 and phase["received"] > 0.5 * phase["sent"], (kind, phase)
        assert phase["latency_ms"]["p50"] > 0
    assert groups["encoder"]["phases"][0]["node"]["torch_loaded"] is False
    assert doc["summary"]["added_latency"]


def test_quantize_export_scaling_small():
    from offline import bench_quantize_export

    result = bench_quantize_export([4, 8, 16], [8, 16, 24], quick=True)
    assert [r["latent_dim"] for r in result["by_latent_dim"]] == [4, 8, 16]
    assert all(r["quantize_int8_s"] > 0 and r["export_fp32_s"] > 0 for r in result["by_latent_dim"])
    assert 0.0 <= result["fit_evaluate_dataset_size"]["r2"] <= 1.0 or result["fit_evaluate_dataset_size"]["r2"] < 0
