"""What `<output>/telemetry` costs: the node-level latency benchmark (bench/node_level.py's driver and node
processes, real DDS, real frames) with telemetry on and off, plus the in-process cost of the telemetry call.

Node level: one camera, 640x480 rgb8, reliable, 30 Hz, Fast DDS default transports. The pass-through node runs
first (the same-run baseline); then one encoder node process per model whose `publish_telemetry` (and, for the
puzzle, `telemetry_decode`) is switched live through its parameter service between phases, alternating off / on
`--rounds` times, so both settings share the process, the warm-up and the machine's load drift. The driver
subscribes to the telemetry topic too (as SAGE would). Added latency = median over rounds of
(p50 with telemetry - p50 without), and each setting's p50 minus the pass-through's.

In process: runtime/telemetry.batch_telemetry on one 640x480 frame's prepared input (decode + maths), median.

    python bench/telemetry_cost.py --out bench/results/telemetry_cost.json [--duration 6] [--rounds 3] [--quick]
"""
from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np

import harness
import node_level as nl

MODELS = harness.REPO / "models"


class TelemetryDriver(nl.Driver):
    """node_level's driver, also subscribed to <output>/telemetry (receive time per stamp, as for latents)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.telemetry: dict[int, int] = {}
        self.telemetry_lock = threading.Lock()
        self.subscriptions += [self.node.create_subscription(Image, t.rsplit("/", 1)[0] + f"/{out}/telemetry",
                                                             self._count, reliable)
                               for t in self.topics for out in ("latent", "puzzle")]

    def _count(self, msg) -> None:
        now = time.time_ns()
        with self.telemetry_lock:
            self.telemetry[msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec] = now

    def set_params(self, node_name: str, **values) -> None:
        from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
        from rcl_interfaces.srv import SetParameters

        client = self.node.create_client(SetParameters, f"/{node_name}/set_parameters")
        if not client.wait_for_service(timeout_sec=30):
            raise RuntimeError(f"no parameter service on {node_name}")
        request = SetParameters.Request(parameters=[
            Parameter(name=k, value=ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=v))
            for k, v in values.items()])
        future = client.call_async(request)
        deadline = time.monotonic() + 30
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not future.done() or not all(r.successful for r in future.result().results):
            raise RuntimeError(f"setting {values} on {node_name} failed")
        self.node.destroy_client(client)


def node_command(kind: str, topics: list[str], bundle: str) -> list[str]:
    command = nl.node_command(kind, topics, "raw", bundle, "reliable")
    return command + ["-r", f"__node:={kind}_under_test"] if kind != "passthrough" else command


def run_phase(driver, messages, rate, duration, node) -> dict:
    """node_level's phase (latent latency, drops, CPU) plus the telemetry's own latency: its receive time minus the
    source stamp (the stamp is the publish time), for the telemetry that arrived."""
    with driver.telemetry_lock:
        driver.telemetry.clear()
    row = driver.run_phase(messages, rate, duration, node)
    with driver.telemetry_lock:
        latencies = [(received - stamp) / 1e6 for stamp, received in driver.telemetry.items()]
    row["telemetry_received"] = len(latencies)
    row["telemetry_latency_ms"] = {"p50": float(np.percentile(latencies, 50)) if latencies else None,
                                   "p99": float(np.percentile(latencies, 99)) if latencies else None}
    return row


def node_level(args, frames) -> dict:
    """Pass-through, then each model with telemetry alternating off / on."""
    import rclpy

    env = dict(os.environ, ROS_DOMAIN_ID=str(101 + os.getpid() % 100))
    os.environ["ROS_DOMAIN_ID"] = env["ROS_DOMAIN_ID"]
    env.pop("ROS_AUTOMATIC_DISCOVERY_RANGE", None)
    rclpy.init()
    results = {"scenario": {"cameras": 1, "resolution": "640x480", "transport": "raw", "qos": "reliable",
                            "rate_hz": args.rate, "duration_s": args.duration, "rounds": args.rounds}, "runs": {}}
    models = [("encoder", "tinyvae_l64_fp32", [("off", {"publish_telemetry": False}),
                                               ("on", {"publish_telemetry": True})])]
    if not args.quick:
        models.append(("puzzle", "puzzle_l64_fp32", [
            ("off", {"publish_telemetry": False}), ("on", {"publish_telemetry": True, "telemetry_decode": False}),
            ("on+decode", {"publish_telemetry": True, "telemetry_decode": True})]))
    try:
        for kind, bundle, settings in [("passthrough", None, [("baseline", {})]), *models]:
            driver = TelemetryDriver(1, "raw", "reliable")
            process = nl.NodeProcess(kind, node_command(kind, driver.topics, bundle and str(MODELS / bundle)),
                                     env, f"telemetry-{kind}")
            try:
                messages = [nl.build_messages(frames, "640x480", "raw", "camera0")]
                if not driver.wait_ready(messages, process):
                    results["runs"][kind] = {"error": "node produced no output", "log_tail": process.log_tail()}
                    continue
                phases = []
                for round_index in range(1 if kind == "passthrough" else args.rounds):
                    for name, values in settings:
                        if values:
                            driver.set_params(f"{kind}_under_test", **values)
                            time.sleep(0.3)
                        row = run_phase(driver, messages, args.rate, args.duration, process)
                        row.update(setting=name, round=round_index)
                        phases.append(row)
                        print(f"  {kind:11s} {name:10s} round {round_index}: p50 {row['latency_ms']['p50']:6.2f} ms "
                              f"p99 {row['latency_ms']['p99']:6.2f} ms, {row['received']}/{row['sent']} latents, "
                              f"{row['telemetry_received']} telemetry (p50 "
                              f"{row['telemetry_latency_ms']['p50'] or float('nan'):.2f} ms), "
                              f"cpu {row['node']['cpu_percent']:.0f} %",
                              flush=True)
                results["runs"][kind] = {"bundle": bundle, "phases": phases}
            finally:
                process.stop()
                driver.close()
    finally:
        rclpy.try_shutdown()
    return results


def summarize(results: dict) -> dict:
    runs = results["runs"]
    base = runs.get("passthrough", {}).get("phases", [{}])[0].get("latency_ms", {}).get("p50")
    out = {"passthrough_p50_ms": base}
    for kind, run in runs.items():
        if kind == "passthrough" or "phases" not in run:
            continue
        by_setting, telemetry_p50, cpu = {}, {}, {}
        for row in run["phases"]:
            by_setting.setdefault(row["setting"], []).append(row["latency_ms"]["p50"])
            telemetry_p50.setdefault(row["setting"], []).append(row["telemetry_latency_ms"]["p50"])
            cpu.setdefault(row["setting"], []).append(row["node"]["cpu_percent"])
        off = by_setting.get("off", [])
        entry = {name: {"p50_ms_per_round": values, "median_p50_ms": float(np.median(values)),
                        "added_vs_passthrough_ms": float(np.median(values)) - base if base is not None else None,
                        "telemetry_p50_ms_per_round": telemetry_p50[name],
                        "node_cpu_percent_median": float(np.median(cpu[name]))}
                 for name, values in by_setting.items()}
        for name, values in by_setting.items():
            if name != "off" and len(values) == len(off):
                entry[name]["added_vs_off_ms_median_of_rounds"] = float(np.median(np.subtract(values, off)))
                # the telemetry message itself: how much later than the latent it arrives, same frames
                later = [t - lat for t, lat in zip(telemetry_p50[name], values) if t is not None]
                entry[name]["telemetry_after_latent_p50_ms_median"] = float(np.median(later)) if later else None
        out[kind] = entry
    return out


def in_process(repeats: int) -> dict:
    """batch_telemetry alone on one prepared 640x480 frame, as the node calls it after publishing the latent."""
    from sage_ros.runtime import telemetry as T
    from sage_ros.runtime.backends import make_backend
    from sage_ros.runtime.bundle import load_bundle
    from sage_ros.runtime.preprocess import Preprocessor

    frame = nl.build_messages(nl.load_frames(1), "640x480", "raw", "c")[0]
    from sage_ros.runtime.image_codec import image_msg_to_rgb8

    frame = image_msg_to_rgb8(frame)
    out = {}
    for name, decode_options in (("tinyvae_l64_fp32", [True]), ("tinyvae_l8_fp32", [True]),
                                 ("puzzle_l64_fp32", [False, True])):
        bundle = load_bundle(MODELS / name)
        with make_backend(bundle, "onnxruntime", "cpu", intra_op_threads=1) as backend:
            prepared = Preprocessor.from_bundle(bundle, "resize").prepare([frame])
            outputs = backend.encode(prepared.batch)
            encode = harness.time_calls(lambda: backend.encode(prepared.batch), repeats=repeats)
            for decode in decode_options:
                stats = harness.time_calls(lambda: T.telemetry_images(
                    T.batch_telemetry(backend, prepared, outputs, frames_hw=[(480, 640)], encode_s=0.001,
                                      received=[time.monotonic()], decode=decode),
                    T.bundle_fields(bundle), [None]), repeats=repeats)
                key = f"{name}{'' if decode or not bundle.is_vq else ' (no decode)'}"
                out[key] = {"telemetry": stats, "encoder_alone": encode}
                print(f"  in process {key:32s}: telemetry {stats['median_ms']:.3f} ms median "
                      f"(p99 {stats['p99_ms']:.3f}); encoder alone {encode['median_ms']:.3f} ms", flush=True)
    return out


def main() -> int:
    parser = harness.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per measured phase")
    parser.add_argument("--rounds", type=int, default=3, help="off/on alternations per model")
    parser.add_argument("--rate", type=float, default=30.0)
    args = parser.parse_args()
    if args.quick:
        args.duration, args.rounds = min(args.duration, 1.5), 1
    started = time.perf_counter()
    load = os.getloadavg()[0]
    micro = in_process(50 if args.quick else 300)
    frames = nl.load_frames()
    results = node_level(args, frames)
    harness.write_result(args.out, "telemetry_cost", {
        "what": "encoder node latency (source stamp -> latent received over DDS) with <output>/telemetry off and "
                "on, switched live in one node process, alternating; pass-through baseline in the same run; "
                "plus batch_telemetry's own time in process",
        "load_1min_at_start": load, "in_process": micro, "node_level": results, "summary": summarize(results),
    }, started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
