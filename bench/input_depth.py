"""Measure: does a good frame survive a malformed one published right after it, per input history depth?

Issue #11 finding 1, the part below the node: with keep-last depth 1 the middleware replaces a sample that has not
been taken yet, so a good frame followed at once by a malformed one is gone before any callback can refuse the
malformed one. A bare rclpy subscriber (best effort, keep last `depth`) in its own process counts the good frames
it sees; a publisher here sends `pairs` (good, bad) pairs back to back, one pair per 50 ms.

    python bench/input_depth.py            # depths 1 2 5, 40 pairs each; prints one line per depth
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

PAIRS = 40

SUBSCRIBER = r"""
import json, sys, threading, time
import rclpy
from rclpy.qos import QoSProfile, HistoryPolicy, ReliabilityPolicy
from sensor_msgs.msg import Image
depth, seconds = int(sys.argv[1]), float(sys.argv[2])
rclpy.init()
node = rclpy.create_node(f"depth_probe_{depth}")
seen = {"good": 0, "bad": 0}
def callback(msg):
    seen["good" if msg.encoding == "rgb8" and len(msg.data) == msg.step * msg.height else "bad"] += 1
qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.BEST_EFFORT)
node.create_subscription(Image, "depth_probe", callback, qos)
print("ready", flush=True)
end = time.monotonic() + seconds
while time.monotonic() < end:
    rclpy.spin_once(node, timeout_sec=0.05)
print(json.dumps(seen), flush=True)
"""


def measure(depth: int, pairs: int = PAIRS) -> dict:
    import rclpy
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    seconds = 4.0 + pairs * 0.05
    sub = subprocess.Popen([sys.executable, "-c", SUBSCRIBER, str(depth), str(seconds)], stdout=subprocess.PIPE,
                           text=True)
    assert sub.stdout.readline().strip() == "ready"
    context = rclpy.context.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("depth_probe_pub", context=context)
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
    pub = node.create_publisher(Image, "depth_probe", qos)
    deadline = time.monotonic() + 10
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # both sides matched
    good = Image(height=48, width=64, encoding="rgb8", step=64 * 3)
    good.data = bytes(48 * 64 * 3)
    bad = Image(height=48, width=64, encoding="rgb8", step=64 * 3)
    bad.data = bytes(100)  # malformed: data shorter than step * height
    for _ in range(pairs):
        pub.publish(good)
        pub.publish(bad)
        time.sleep(0.05)
    out, _ = sub.communicate(timeout=seconds + 20)
    node.destroy_node()
    rclpy.shutdown(context=context)
    seen = json.loads(out.strip().splitlines()[-1])
    return {"depth": depth, "pairs": pairs, **seen}


def main() -> int:
    depths = [int(d) for d in sys.argv[1:]] or [1, 2, 5]
    for depth in depths:
        result = measure(depth)
        print(f"keep-last depth {result['depth']}: good frames seen {result['good']}/{result['pairs']}, "
              f"malformed seen {result['bad']}/{result['pairs']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
