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
from bundles import bundles_for_bench, describe

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


def main() -> int:
    parser = harness.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--scenario", choices=[s[0] for s in SCENARIOS], help="internal: one scenario only")
    args = parser.parse_args()
    started = time.perf_counter()
    duration = 2.0 if args.quick else args.duration
    tool = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    os.environ["PATH"] = str(Path(tool).parent) + os.pathsep + os.environ.get("PATH", "")
    os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    bundle = next((str(b) for b in bundles_for_bench(args.quick) if describe(b)["architecture"] == "TinyVAE"), None)
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
    first = next(iter(doc["scenarios"].values()))
    doc["top"], doc["error"] = first.get("top", []), first.get("error")
    harness.write_result(args.out, "profile_node", doc, started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
