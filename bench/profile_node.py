"""Profile the encoder node's hot path with py-spy while the driver feeds it real frames over DDS.

py-spy samples the running node process from outside (no code change, no instrumentation overhead in the
node); the collapsed stacks it writes are folded here into own / total sample shares per function, for raw rgb8
and JPEG input. Idle threads (executor waiting, worker waiting for a frame) are not sampled.

    python bench/profile_node.py --out bench/results/profile_node.json [--quick]
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import harness
import node_level as nl
from bundles import bundles_for_bench, describe, pick

SCENARIOS = (("raw", "640x480", 2, 30), ("compressed", "640x480", 2, 30))


# Leaf frames where a thread waits rather than works (py-spy's idle detection misses GIL-free waits in C).
WAITS = ("_wait_for_ready_callbacks", "Condition.wait", "Event.wait", "Thread.join", "sleep")


def fold(collapsed: Path, top: int = 15) -> tuple[list[dict], int, int]:
    """py-spy raw output (one 'frame;frame;... count' line per stack) -> top functions by own samples among
    busy samples, the busy sample count and the waiting sample count."""
    own, total, samples, waiting = Counter(), Counter(), 0, 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        if frames[-1].split(" (")[0].endswith(WAITS):
            waiting += n
            continue
        samples += n
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    rows = []
    for frame, n in own.most_common(top):
        function, _, location = frame.partition(" (")
        rows.append({"function": function, "location": location.rstrip(")").replace(str(harness.REPO) + "/", ""),
                     "own_pct": 100.0 * n / samples, "total_pct": 100.0 * total[frame] / samples})
    return rows, samples, waiting


def profile_scenario(transport: str, resolution: str, cameras: int, rate: float, duration: float, bundle: str,
                     out_dir: Path) -> dict:
    import rclpy

    rclpy.init()
    driver = nl.Driver(cameras, transport, "reliable")
    node = nl.NodeProcess("encoder", nl.node_command("encoder", driver.topics, transport, bundle, "reliable"),
                          dict(os.environ), f"profile-{transport}")
    try:
        frames = nl.load_frames()
        messages = [nl.build_messages(frames, resolution, transport, f"camera{c}") for c in range(cameras)]
        if not driver.wait_ready(messages, node):
            return {"error": "node produced no output", "log_tail": node.log_tail()}
        collapsed = out_dir / f"pyspy_{transport}.txt"
        spy = subprocess.Popen(["py-spy", "record", "--pid", str(node.proc.pid), "--duration", str(int(duration)),
                                "--rate", "250", "--format", "raw", "--output", str(collapsed), "--nonblocking"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(0.5)
        phase = driver.run_phase(messages, rate, duration, node)
        spy_out, _ = spy.communicate(timeout=60)
        if not collapsed.exists():
            return {"error": f"py-spy wrote nothing: {spy_out.strip()[-300:]}"}
        top, samples, waiting = fold(collapsed)
        return {"latency_ms": phase["latency_ms"], "dropped": phase["dropped"], "sent": phase["sent"],
                "cpu_percent": phase["node"]["cpu_percent"], "busy_samples": samples, "waiting_samples": waiting,
                "top": top}
    finally:
        node.stop()
        driver.close()
        rclpy.try_shutdown()


def profile_onnx(bundle_dir: Path, runs: int, out_dir: Path) -> dict:
    """onnxruntime's own profiler on one bundle's encoder (1 thread, batch 1): time share per operator type."""
    import json

    import numpy as np
    import onnxruntime as ort

    info = describe(bundle_dir)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.enable_profiling = True
    options.profile_file_prefix = str(out_dir / f"ort_{info['name']}")
    session = ort.InferenceSession(str(bundle_dir / "encoder.onnx"), options, providers=["CPUExecutionProvider"])
    lo, hi = info["input"]["range"]
    x = np.random.default_rng(0).uniform(lo, hi, (1, 3, info["input"]["height"], info["input"]["width"]))
    for _ in range(runs):
        session.run(None, {"image": x.astype(np.float32)})
    events = json.loads(Path(session.end_profiling()).read_text())
    by_op, total = Counter(), 0
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event.get("args", {}).get("op_name", "?")
            by_op[op] += event["dur"]
            total += event["dur"]
    return {"bundle": info["name"], "precision": info["precision"], "runs": runs,
            "kernel_ms_per_run": total / runs / 1e3,
            "by_op": [{"op": op, "share_pct": 100.0 * us / total, "ms_per_run": us / runs / 1e3}
                      for op, us in by_op.most_common(10)]}


def int8_activation_variants(fp32_bundle: Path, rounds: int, work_dir: Path) -> dict:
    """The slowest model's INT8 speed with symmetric int8 activations (the shipped QDQ scheme, TensorRT's) vs
    asymmetric uint8 activations, against its fp32 graph, interleaved in one process (1 thread, batch 1).

    Why: the profile shows the symmetric graph spends its time in Q/DQ pairs around every Relu: with a zero
    point of 0 in int8, Relu cannot be folded into the preceding quantization, so onnxruntime keeps
    Conv -> Q -> DQ -> Relu -> Q between every layer; with uint8 (zero point at the range minimum) it folds.
    Same calibration data (bundled val crops), same excluded codebook search, same onnxruntime quantizer.
    """
    import numpy as np
    import onnxruntime as ort
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_static

    from sage_ros.compression.onnx_quant import ArrayCalibrationReader, _vq_search_nodes, graph_nodes
    from sage_ros.data import load_split

    info = describe(fp32_bundle)
    lo, hi = info["input"]["range"]
    images = load_split(info["input"]["height"], "val")[:32]
    calibration = (images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0 * (hi - lo) + lo).astype(np.float32)
    fp32 = fp32_bundle / "encoder.onnx"
    pre = work_dir / "int8_pre.onnx"
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    exclude = _vq_search_nodes(graph_nodes(fp32)) if info["architecture"] == "VisionPuzzleVAE" else []
    paths = {"fp32": fp32}
    for label, activation, symmetric in (("int8 symmetric activations (onnx_quant.py scheme)", QuantType.QInt8, True),
                                         ("uint8 asymmetric activations", QuantType.QUInt8, False)):
        out = work_dir / f"int8_{activation.name}.onnx"
        quantize_static(str(pre), str(out), ArrayCalibrationReader("image", calibration, 32),
                        quant_format=QuantFormat.QDQ, per_channel=True, activation_type=activation,
                        weight_type=QuantType.QInt8, nodes_to_exclude=exclude,
                        extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True,
                                       # as onnx_quant.py: mu / logvar (Gemm/MatMul outputs) stay float
                                       "OpTypesToExcludeOutputQuantization": ["Gemm", "MatMul"]})
        paths[label] = out
    sessions = {}
    for label, path in paths.items():
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        sessions[label] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = calibration[:1]
    samples = {label: [] for label in sessions}
    for _ in range(rounds):  # interleaved: the machine's background load hits every variant alike
        for label, session in sessions.items():
            t0 = time.perf_counter()
            session.run(None, {"image": x})
            samples[label].append(time.perf_counter() - t0)
    reference = sessions["fp32"].run(None, {"image": calibration})[0]
    rows = []
    for label, times in samples.items():
        stats = harness.summarize(times)
        output = sessions[label].run(None, {"image": calibration})[0]
        rows.append({"variant": label, **stats,
                     "speedup_vs_fp32": harness.ratio(samples_median(samples["fp32"]), samples_median(times)),
                     "speedup_vs_fp32_min": harness.ratio(min(samples["fp32"]), min(times)),
                     "agreement_vs_fp32_seeded": float((output == reference).mean()) if output.dtype.kind == "i"
                     else None})
    return {"bundle": info["name"], "rounds": rounds, "rows": rows,
            "note": "agreement is measured on the calibration images: a smoke check; held-out figures: int8_trained.py"}


def samples_median(samples) -> float:
    import numpy as np

    return float(np.median(samples))


def main() -> int:
    parser = harness.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--scenario", choices=[s[0] for s in SCENARIOS], help="internal: one scenario only")
    args = parser.parse_args()
    started = time.perf_counter()
    duration = 2.0 if args.quick else args.duration
    tool = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    os.environ["PATH"] = str(Path(tool).parent) + os.pathsep + os.environ.get("PATH", "")
    os.environ["ROS_DOMAIN_ID"] = str(101 + os.getpid() % 100)  # as node_level.py: own domain, ROS's range
    os.environ.pop("ROS_AUTOMATIC_DISCOVERY_RANGE", None)
    bundle = str(pick("TinyVAE", args.quick))
    scratch = harness.REPO / "runs" / "bench" / "profile"
    scratch.mkdir(parents=True, exist_ok=True)
    doc = {"tool": "py-spy 0.4 record --rate 250 --nonblocking (Python frames; time in C extensions is charged to "
                   "the calling Python frame; shares are of busy samples, waits excluded)",
           "bundle": bundle, "scenarios": {}}
    scenarios = SCENARIOS[:1] if args.quick else SCENARIOS
    doc["scenario"] = "; ".join(f"{t} {r}, {c} cameras x {hz} Hz, {duration:.0f} s" for t, r, c, hz in scenarios)
    for transport, resolution, cameras, rate in scenarios:
        result = profile_scenario(transport, resolution, cameras, rate, duration, bundle, scratch)
        doc["scenarios"][transport] = result
        for row in result.get("top", [])[:6]:
            print(f"  {transport}: {row['own_pct']:5.1f} % own {row['total_pct']:5.1f} % total  {row['function']} "
                  f"({row['location']})", flush=True)
        if result.get("error"):
            print(f"  {transport}: {result['error']}", flush=True)
    # the slowest model at each precision, op by op (onnxruntime's profiler)
    doc["onnx"] = [profile_onnx(b, 5 if args.quick else 30, scratch) for b in bundles_for_bench(args.quick)
                   if describe(b)["architecture"] == ("TinyVAE" if args.quick else "VisionPuzzleVAE")]
    for entry in doc["onnx"]:
        print(f"  onnx {entry['bundle']}: {entry['kernel_ms_per_run']:.2f} ms kernels/run; " + ", ".join(
            f"{o['op']} {o['share_pct']:.0f} %" for o in entry["by_op"][:5]), flush=True)
    slowest = next((b for b in bundles_for_bench(args.quick) if describe(b)["precision"] == "fp32" and
                    describe(b)["architecture"] == ("TinyVAE" if args.quick else "VisionPuzzleVAE")), None)
    if slowest is not None:
        doc["int8_variants"] = int8_activation_variants(slowest, 5 if args.quick else 150, scratch)
        for row in doc["int8_variants"]["rows"]:
            print(f"  {row['variant']}: {row['median_ms']:.2f} ms, x{row['speedup_vs_fp32']:.2f} vs fp32", flush=True)
    tiny = pick("TinyVAE") if not args.quick else None
    if tiny is not None and describe(tiny)["precision"] != "fp32":  # the variants start from a float graph
        tiny = next((b for b in bundles_for_bench() if describe(b)["architecture"] == "TinyVAE"
                     and describe(b)["precision"] == "fp32"), None)
    if tiny is not None:
        doc["int8_variants_tinyvae"] = int8_activation_variants(tiny, 300, scratch)
    first = next(iter(doc["scenarios"].values()))
    doc["top"], doc["error"] = first.get("top", []), first.get("error")
    harness.write_result(args.out, "profile_node", doc, started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
