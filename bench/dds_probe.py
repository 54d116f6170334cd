"""Probe: do large frames survive DDS with the environment as given? 30 Hz for 2 s through the pass-through node.

Prints sent / received and latency for 640x480 and 1280x720 rgb8. The environment decides the transport, e.g.

    env -u ROS_AUTOMATIC_DISCOVERY_RANGE FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA ROS_DOMAIN_ID=179 \\
        python bench/dds_probe.py best_effort
    ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA ROS_DOMAIN_ID=179 \\
        python bench/dds_probe.py best_effort
"""
from __future__ import annotations

import os
import sys

import node_level as nl


def main() -> int:
    import rclpy

    qos = sys.argv[1] if len(sys.argv) > 1 else "best_effort"
    rclpy.init()
    frames = nl.load_frames(4)
    driver = nl.Driver(1, "raw", qos)
    node = nl.NodeProcess("passthrough", nl.node_command("passthrough", driver.topics, "raw", None, qos),
                          dict(os.environ), "dds_probe")
    try:
        for resolution in nl.RESOLUTIONS:
            messages = [nl.build_messages(frames, resolution, "raw", "camera0")]
            driver.wait_ready(messages, node)
            phase = driver.run_phase(messages, 30, 2.0, node)
            print(f"discovery range {os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE', 'unset')}, "
                  f"FASTDDS_BUILTIN_TRANSPORTS {os.environ.get('FASTDDS_BUILTIN_TRANSPORTS', 'unset')}, {qos}, "
                  f"{resolution}: received {phase['received']}/{phase['sent']}, "
                  f"p50 {phase['latency_ms']['p50']:.2f} ms", flush=True)
    finally:
        node.stop()
        driver.close()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
