"""Node level, over real DDS on this machine: end-to-end latency, drops, max rate, CPU % and RSS of the encoder.

A driver process publishes real frames (the bundled vtest bag, resized with cv2.INTER_AREA to 640x480 and
1280x720; rgb8 `Image` or JPEG `CompressedImage`) at 15/30/60 Hz from 1/2/4 cameras, each message stamped with
the wall clock just before publish, and subscribes every camera's `latent` output. Latency = receive time - source
stamp (same host clock). Drops = frames sent whose latent never arrived. The node under test runs in its own
process: the TinyVAE encoder node (onnxruntime backend), and as the same-run baseline bench/passthrough_node.py,
which subscribes the same topics with the same QoS and republishes a tiny message. The encoder's added latency is
encoder p50 - pass-through p50 of the same scenario. CPU % (of one core) and RSS of the node process come from
psutil; whether it loaded torch from its /proc/<pid>/maps.

Each DDS transport setting (Fast DDS default, FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA) runs in its own driver
process, since every participant must be started with the variable.

    python bench/node_level.py --out bench/results/node_level.json [--quick] [--duration 3]
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

import harness
from bundles import pick

RESOLUTIONS = {"640x480": (480, 640), "1280x720": (720, 1280)}
RATES = (15, 30, 60)
CAMERAS = (1, 2, 4)
MAX_RATE_STEPS = (30, 60, 120, 240)
LOGS = harness.REPO / "runs" / "bench" / "logs"
PY = sys.executable


# ----------------------------------------------------------------------------------------------- the plan
def make_plan(quick: bool, duration: float, has_puzzle: bool) -> dict:
    """Scenario groups per DDS transport. One node process per group; phases vary resolution and rate."""
    def group(kind, transport, cameras, resolutions, rates, dur=duration, qos="reliable"):
        return {"kind": kind, "transport": transport, "cameras": cameras, "qos": qos,
                "phases": [{"resolution": r, "rate": hz, "duration": dur} for r in resolutions for hz in rates]}

    if quick:
        default = [group(k, "raw", 1, ["640x480"], [30], 1.0) for k in ("passthrough", "encoder")]
        return {"default": default, "LARGE_DATA": []}
    kinds = ("passthrough", "encoder")  # baseline first, then the encoder, same scenario
    # Fast DDS default transports (UDP + SHM with 512 KB segments): reliable input, every transport/camera count
    default = [group(kind, transport, cameras, list(RESOLUTIONS), RATES)
               for transport in ("raw", "compressed") for cameras in CAMERAS for kind in kinds]
    default += [{**group(kind, "raw", 1, ["640x480"], MAX_RATE_STEPS, 2.0), "max_rate_search": True}
                for kind in kinds]
    default += [group(kind, "raw", 1, list(RESOLUTIONS), [30], qos="best_effort") for kind in kinds]
    if has_puzzle:
        default.append({**group("puzzle", "raw", 1, ["640x480"], [15, 30]), "optional": True})
    # LARGE_DATA (TCP + SHM for data): the nodes' default best-effort input, raw frames, 1 and 2 cameras
    large = [group(kind, "raw", cameras, list(RESOLUTIONS), RATES, qos="best_effort")
             for cameras in (1, 2) for kind in kinds]
    large += [{**group(kind, "raw", 1, ["640x480"], MAX_RATE_STEPS, 2.0, qos="best_effort"),
               "max_rate_search": True} for kind in kinds]
    large += [group(kind, "raw", 1, list(RESOLUTIONS), [30]) for kind in kinds]  # reliable, for comparison
    return {"default": default, "LARGE_DATA": large}


# ----------------------------------------------------------------------------------------------- frames
def load_frames(count: int = 8) -> list[np.ndarray]:
    """`count` real 768x576 RGB frames spread over the bundled vtest bag's raw topic."""
    from sage_ros.data import vtest_bag_path
    from sage_ros.data.rosbag import iter_bag_images

    frames = [frame for _, frame in iter_bag_images(vtest_bag_path(), "/camera/image_raw", stride=20,
                                                    max_frames=count)]
    if not frames:
        raise RuntimeError("the vtest bag has no frames on /camera/image_raw (run `make data`)")
    return frames


def build_messages(frames, resolution: str, transport: str, frame_id: str) -> list:
    import cv2
    from sensor_msgs.msg import CompressedImage

    from sage_ros.runtime.image_codec import encode_compressed, numpy_to_image

    height, width = RESOLUTIONS[resolution]
    messages = []
    for frame in frames:
        resized = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
        if transport == "compressed":
            msg = CompressedImage(format="rgb8; jpeg compressed bgr8")
            msg.data = encode_compressed(resized, "jpeg", 90)
        else:
            msg = numpy_to_image(resized, "rgb8")
        msg.header.frame_id = frame_id
        messages.append(msg)
    return messages


# ----------------------------------------------------------------------------------------------- node process
def node_command(kind: str, topics: list[str], transport: str, bundle: str | None, qos: str) -> list[str]:
    params = ["-p", f"image_topics:=[{','.join(topics)}]", "-p", f"input_transport:={transport}",
              "-p", f"qos_reliability:={qos}"]
    if kind == "passthrough":
        return [PY, str(harness.REPO / "bench" / "passthrough_node.py"), "--ros-args", *params]
    entry = "main_tinyvae" if kind == "encoder" else "main_puzzle"
    return [PY, "-c", f"import sys; from sage_ros.ros.encoder_node import {entry}; sys.exit({entry}())",
            "--ros-args", "-p", f"bundle:={bundle}", "-p", "backend:=onnxruntime", *params]


class NodeProcess:
    """The node under test, with psutil watching its CPU and memory."""

    def __init__(self, kind: str, cmd: list[str], env: dict, log_name: str):
        import psutil

        LOGS.mkdir(parents=True, exist_ok=True)
        self.log_path = LOGS / f"{log_name}.log"
        self._log = open(self.log_path, "w")
        self.kind = kind
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.ps = psutil.Process(self.proc.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def cpu_start(self) -> None:
        self.ps.cpu_percent(None)

    def usage(self) -> dict:
        """CPU % of one core since cpu_start, RSS now, peak RSS, and which ML libraries are mapped."""
        maps = Path(f"/proc/{self.proc.pid}/maps").read_text()
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        hwm = next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM")), None)
        return {"cpu_percent": self.ps.cpu_percent(None), "rss_mb": self.ps.memory_info().rss / 2**20,
                "peak_rss_mb": hwm, "torch_loaded": "libtorch" in maps, "onnxruntime_loaded": "onnxruntime" in maps}

    def log_tail(self, lines: int = 8) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


# ----------------------------------------------------------------------------------------------- driver
class Driver:
    """Publishes camera frames and collects the latents that come back (one rclpy node, spun in a thread)."""

    def __init__(self, cameras: int, transport: str, qos: str):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import CompressedImage, Image

        self.node = rclpy.create_node(f"bench_driver_{os.getpid()}")
        self.topics = [f"/bench_cam{i}/image_raw" for i in range(cameras)]
        msg_type = CompressedImage if transport == "compressed" else Image
        suffix = "/compressed" if transport == "compressed" else ""
        # Reliable keep-last-1 camera: a slow subscriber makes the writer replace the unacknowledged frame
        # (a drop we count), never block. Best effort: sensor-data QoS, as most camera drivers publish.
        camera_qos = qos_profile_sensor_data if qos == "best_effort" else QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self.publishers = [self.node.create_publisher(msg_type, t + suffix, camera_qos) for t in self.topics]
        reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.lock = threading.Lock()
        self.received: list[dict[int, int]] = [dict() for _ in self.topics]
        self.subscriptions = [
            self.node.create_subscription(Image, t.rsplit("/", 1)[0] + "/" + out, self._sink(i), reliable)
            for i, t in enumerate(self.topics) for out in ("latent", "puzzle")]
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _sink(self, camera: int):
        def callback(msg) -> None:
            now = time.time_ns()
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            with self.lock:
                self.received[camera][stamp] = now
        return callback

    def publish_round(self, messages_by_camera: list[list], k: int) -> tuple[list[int], int]:
        """Publish frame k on every camera; returns the stamps sent and the count of publish errors."""
        stamps, errors = [], 0
        for camera, publisher in enumerate(self.publishers):
            msg = messages_by_camera[camera][k % len(messages_by_camera[camera])]
            stamp = time.time_ns()
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            try:
                publisher.publish(msg)
                stamps.append(stamp)
            except Exception:  # RCLError on back-to-back large frames: count, continue (docs/design.md)
                errors += 1
        return stamps, errors

    def wait_ready(self, messages_by_camera, node: NodeProcess, timeout_s: float = 60.0) -> bool:
        """Publish at 5 Hz until every camera got two latents back (discovery + node start + warm-up)."""
        deadline, k = time.monotonic() + timeout_s, 0
        while time.monotonic() < deadline and node.alive():
            self.publish_round(messages_by_camera, k)
            k += 1
            time.sleep(0.2)
            with self.lock:
                if all(len(r) >= 2 for r in self.received):
                    return True
        return False

    def run_phase(self, messages_by_camera, rate: float, duration: float, node: NodeProcess) -> dict:
        with self.lock:
            for r in self.received:
                r.clear()
        sent = [[] for _ in self.publishers]
        publish_errors, behind = 0, 0
        node.cpu_start()
        start = time.perf_counter()
        k = 0
        while (now := time.perf_counter()) - start < duration:
            target = start + k / rate
            if target > now:
                time.sleep(target - now)
            elif now - target > 1.0 / rate:
                behind += 1
            stamps, errors = self.publish_round(messages_by_camera, k)
            publish_errors += errors
            for camera, stamp in enumerate(stamps):
                sent[camera].append(stamp)
            k += 1
        elapsed = time.perf_counter() - start
        time.sleep(max(0.5, 3.0 / rate))  # let the last latents arrive
        usage = node.usage()
        with self.lock:
            received = [dict(r) for r in self.received]
        latencies = [(received[c][s] - s) / 1e6 for c in range(len(sent)) for s in sent[c] if s in received[c]]
        n_sent = sum(len(s) for s in sent)
        n_received = sum(1 for c in range(len(sent)) for s in sent[c] if s in received[c])
        lat = np.asarray(latencies) if latencies else np.asarray([np.nan])
        return {"rate_hz": rate, "duration_s": duration, "cameras": len(sent),
                "achieved_rate_hz": k / elapsed, "publisher_behind_ticks": behind, "publish_errors": publish_errors,
                "sent": n_sent, "received": n_received, "dropped": n_sent - n_received,
                "drop_fraction": (n_sent - n_received) / n_sent if n_sent else None,
                "latency_ms": {"p50": float(np.nanpercentile(lat, 50)), "p90": float(np.nanpercentile(lat, 90)),
                               "p99": float(np.nanpercentile(lat, 99)), "samples": len(latencies)},
                "node": usage}

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


def run_group(group: dict, frames, bundles: dict, env: dict, tag: str) -> dict:
    kind, transport, cameras = group["kind"], group["transport"], group["cameras"]
    bundle = bundles.get(kind)
    result = {k: v for k, v in group.items() if k != "phases"} | {"bundle": bundle, "phases": []}
    if kind != "passthrough" and bundle is None:
        return result | {"error": f"no bundle for {kind}"}
    driver = Driver(cameras, transport, group["qos"])
    node = NodeProcess(kind, node_command(kind, driver.topics, transport, bundle, group["qos"]), env,
                       f"{tag}-{kind}-{transport}-{cameras}cam-{group['qos']}")
    try:
        started = time.perf_counter()
        resolutions = list(dict.fromkeys(p["resolution"] for p in group["phases"]))
        messages = {res: [build_messages(frames, res, transport, f"camera{c}") for c in range(cameras)]
                    for res in resolutions}
        if not driver.wait_ready(messages[resolutions[0]], node):
            return result | {"error": "node produced no output", "log_tail": node.log_tail()}
        result["ready_s"] = time.perf_counter() - started
        for phase in group["phases"]:
            row = {"resolution": phase["resolution"],
                   **driver.run_phase(messages[phase["resolution"]], phase["rate"], phase["duration"], node)}
            result["phases"].append(row)
            print(f"  [{tag}] {group['qos']:11s} {kind:11s} {transport:10s} {cameras} cam {phase['resolution']:>8s} "
                  f"{phase['rate']:>4} Hz: p50 {row['latency_ms']['p50']:7.2f} ms p99 {row['latency_ms']['p99']:7.2f}"
                  f" ms, dropped {row['dropped']}/{row['sent']}, cpu {row['node']['cpu_percent']:.0f} %, "
                  f"rss {row['node']['rss_mb']:.0f} MB", flush=True)
            if not node.alive():
                return result | {"error": "node died", "log_tail": node.log_tail()}
        return result
    finally:
        node.stop()
        driver.close()


def driver_main(plan_path: Path, result_path: Path, tag: str) -> int:
    """One driver process: every group of one DDS transport setting."""
    import rclpy

    plan = json.loads(plan_path.read_text())
    rclpy.init()
    frames = load_frames()
    groups = []
    try:
        for group in plan["groups"]:
            groups.append(run_group(group, frames, plan["bundles"], dict(os.environ), tag))
    finally:
        rclpy.try_shutdown()
    harness.atomic_write_json(result_path, {"groups": groups})
    return 0


# ----------------------------------------------------------------------------------------------- summary
def summarize(groups: list[dict]) -> dict:
    """Encoder minus pass-through p50 per scenario; max zero-drop rate; the numbers the targets name."""
    index = {}
    for g in groups:
        for p in g.get("phases", []):
            index[(g["dds"], g["qos"], g["kind"], g["transport"], g["cameras"], p["resolution"], p["rate_hz"])] = p
    added = []
    for (dds, qos, kind, transport, cameras, res, rate), p in index.items():
        base = index.get((dds, qos, "passthrough", transport, cameras, res, rate))
        if kind == "encoder" and base:
            added.append({"dds": dds, "qos": qos, "transport": transport, "cameras": cameras, "resolution": res, "rate_hz": rate,
                          "encoder_p50_ms": p["latency_ms"]["p50"], "passthrough_p50_ms": base["latency_ms"]["p50"],
                          "added_p50_ms": p["latency_ms"]["p50"] - base["latency_ms"]["p50"],
                          "added_p99_ms": p["latency_ms"]["p99"] - base["latency_ms"]["p99"],
                          "encoder_drops": p["dropped"], "passthrough_drops": base["dropped"]})
    max_rate = {}
    for g in groups:
        if g.get("max_rate_search") and g.get("phases"):
            clean = [p for p in g["phases"] if p["dropped"] == 0 and p["achieved_rate_hz"] >= 0.95 * p["rate_hz"]]
            max_rate[f"{g['dds']} {g['qos']} {g['kind']}"] = {
                "max_zero_drop_rate_hz": max((p["rate_hz"] for p in clean), default=None),
                "steps": [{"rate_hz": p["rate_hz"], "achieved_rate_hz": p["achieved_rate_hz"],
                           "drop_fraction": p["drop_fraction"], "dropped": p["dropped"], "sent": p["sent"],
                           "p50_ms": p["latency_ms"]["p50"]}
                          for p in g["phases"]]}
    return {"added_latency": added, "max_rate": max_rate}


def main() -> int:
    parser = harness.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=2.5, help="seconds per measured phase")
    parser.add_argument("--discovery-range", default=None,
                        help="ROS_AUTOMATIC_DISCOVERY_RANGE for every participant (default: unset, ROS's SUBNET). "
                             "LOCALHOST makes rmw_fastrtps configure its own transports and ignore "
                             "FASTDDS_BUILTIN_TRANSPORTS (measured: LARGE_DATA then still drops best-effort VGA)")
    parser.add_argument("--driver", type=Path, help="internal: run one driver from a plan file")
    parser.add_argument("--result", type=Path)
    parser.add_argument("--tag", default="default")
    args = parser.parse_args()
    if args.driver:
        return driver_main(args.driver, args.result, args.tag)

    started = time.perf_counter()
    bundles = {kind: str(path) for kind, architecture in (("encoder", "TinyVAE"), ("puzzle", "VisionPuzzleVAE"))
               if (path := pick(architecture, args.quick)) is not None}
    plan = make_plan(args.quick, args.duration, "puzzle" in bundles)
    env = dict(os.environ)
    # Own domain (101..200: the tests use 1..100), so concurrent runs on a shared machine do not meet.
    env["ROS_DOMAIN_ID"] = str(101 + os.getpid() % 100)
    env.pop("ROS_AUTOMATIC_DISCOVERY_RANGE", None)
    if args.discovery_range:
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = args.discovery_range
    groups = []
    scratch = harness.REPO / "runs" / "bench"
    scratch.mkdir(parents=True, exist_ok=True)
    for dds, dds_groups in plan.items():
        if not dds_groups:
            continue
        plan_path, result_path = scratch / f"node_plan_{dds}.json", scratch / f"node_result_{dds}.json"
        harness.atomic_write_json(plan_path, {"groups": dds_groups, "bundles": bundles})
        dds_env = dict(env, FASTDDS_BUILTIN_TRANSPORTS=dds) if dds != "default" else env
        print(f"node level, Fast DDS transports: {dds}", flush=True)
        subprocess.run([PY, __file__, "--out", os.devnull, "--driver", str(plan_path), "--result", str(result_path),
                        "--tag", dds], env=dds_env, check=True, timeout=1800)
        groups += [g | {"dds": dds} for g in json.loads(result_path.read_text())["groups"]]
    harness.write_result(args.out, "node_level", {
        "what": "source stamp -> latent received over DDS on this host; drops = sent - received; node CPU % is of "
                "one core; encoder added latency = encoder p50 - pass-through p50 of the same scenario, same run",
        "bundles": bundles, "frames": "vtest bag /camera/image_raw (768x576), cv2.INTER_AREA resize; JPEG q90",
        "discovery_range": args.discovery_range or "unset (SUBNET)", "ros_domain_id": env["ROS_DOMAIN_ID"],
        "groups": groups, "summary": summarize(groups),
    }, started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
