"""Benchmark plumbing: statistics, ratios, markdown regeneration, linear fits, profile folding, `sage-ros bench`."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import harness  # noqa: E402
from offline import linear_fit  # noqa: E402
from profile_node import fold  # noqa: E402


def test_summarize_reports_median_and_p99_in_ms():
    samples = np.arange(1, 101) * 1e-3  # 1..100 ms
    stats = harness.summarize(samples)
    assert stats["samples"] == 100
    assert stats["median_ms"] == pytest.approx(50.5)
    assert stats["p99_ms"] == pytest.approx(np.percentile(np.arange(1, 101), 99))
    assert stats["min_ms"] == pytest.approx(1.0)
    assert harness.summarize([])["median_ms"] is None


def test_time_calls_runs_warmup_plus_repeats():
    calls = []
    stats = harness.time_calls(lambda: calls.append(1), repeats=7, warmup=2)
    assert len(calls) == 9 and stats["samples"] == 7


def test_time_calls_stops_at_max_time():
    import time

    stats = harness.time_calls(lambda: time.sleep(0.02), repeats=10_000, warmup=0, max_time_s=0.1)
    assert 2 <= stats["samples"] < 20


def test_ratio_handles_missing_values():
    assert harness.ratio(3.0, 1.5) == 2.0
    assert harness.ratio(None, 1.0) is None and harness.ratio(1.0, 0) is None


def test_replace_section_keeps_hand_written_text(tmp_path):
    md = tmp_path / "B.md"
    md.write_text("# Title\n\nhand-written intro\n")
    harness.replace_section(md, "first")
    harness.replace_section(md, "second")
    text = md.read_text()
    assert text.startswith("# Title\n\nhand-written intro")
    assert "second" in text and "first" not in text
    assert text.count(harness.BEGIN) == 1 and text.count(harness.END) == 1


def test_write_result_stamps_machine_and_command(tmp_path):
    path = harness.write_result(tmp_path / "r.json", "unit", {"value": 1})
    doc = json.loads(path.read_text())
    assert doc["benchmark"] == "unit" and doc["value"] == 1
    assert doc["machine"]["logical_cores"] >= 1 and doc["machine"]["cpu_model"]
    assert "python" in doc["command"]


def test_linear_fit_tells_linear_from_quadratic():
    xs = [1, 2, 4, 8]
    assert linear_fit(xs, [0.5 + 2 * x for x in xs])["linear"]
    fit = linear_fit(xs, [x ** 3 for x in xs])
    assert not fit["linear"] and fit["r2"] < 0.98


def test_fold_separates_work_from_waiting(tmp_path):
    collapsed = tmp_path / "spy.txt"
    collapsed.write_text(
        "process 1;thread (0x1);run (a.py:1);encode (b.py:2) 30\n"
        "process 1;thread (0x1);run (a.py:1);resize (c.py:3) 10\n"
        "process 1;thread (0x2);spin (e.py:1);Executor._wait_for_ready_callbacks (rclpy/executors.py:796) 60\n")
    rows, busy, waiting = fold(collapsed)
    assert busy == 40 and waiting == 60
    assert rows[0]["function"] == "encode" and rows[0]["own_pct"] == pytest.approx(75.0)
    assert rows[1]["total_pct"] == pytest.approx(25.0)


def test_bench_verb_builds_the_run_all_command():
    import argparse

    from sage_ros import bench_cmd

    parser = argparse.ArgumentParser()
    bench_cmd.add_arguments(parser)
    cmd = bench_cmd.build_command(parser.parse_args(["--only", "peak", "--quick", "--no-markdown"]))
    assert cmd[1].endswith("bench/run_all.py") and cmd[2:] == ["--only", "peak", "--quick", "--no-markdown"]
    with pytest.raises(FileNotFoundError):
        bench_cmd.find_run_all("/nonexistent")  # falls back to this checkout only when --repo is not given


def test_int8_uint8_activation_option(tmp_path):
    """The CPU-speed finding of bench/profile_node.py as an export option: asymmetric uint8 activations."""
    import onnx
    import onnxruntime as ort
    import torch

    from sage_ros.compression.datasets import synthetic_images
    from sage_ros.compression.onnx_quant import OnnxQuantError, export_int8_bundle
    from sage_ros.models import TinyVAE

    torch.manual_seed(0)
    model = TinyVAE(8).eval()
    images = synthetic_images(16, 64)
    out = export_int8_bundle(model, tmp_path / "u8", name="u8", calibration_images=images, activations="uint8")
    meta = json.loads((out / "bundle.json").read_text())
    assert meta["quantization"]["activations"].startswith("uint8")
    graph = onnx.load(str(out / "encoder.onnx")).graph
    zero_points = {i.name: i for i in graph.initializer if i.name.endswith("zero_point")}
    assert any(z.data_type == onnx.TensorProto.UINT8 for z in zero_points.values())
    x = images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    mu = ort.InferenceSession(str(out / "encoder.onnx"), providers=["CPUExecutionProvider"]).run(
        ["mu"], {"image": x})[0]
    with torch.no_grad():
        reference = model.encode(torch.from_numpy(x))[0].numpy()
    cosine = (mu * reference).sum(1) / (np.linalg.norm(mu, axis=1) * np.linalg.norm(reference, axis=1))
    assert cosine.mean() > 0.95
    with pytest.raises(OnnxQuantError):
        export_int8_bundle(model, tmp_path / "bad", name="bad", calibration_images=images, activations="int16")
