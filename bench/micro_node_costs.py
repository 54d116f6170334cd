"""Per-frame costs of the encoder node's library calls, one at a time (the figures behind the profile notes):
rclpy deserialization of a raw frame, cv2 INTER_AREA resize to 64x64 with 1 and 2 OpenCV threads, the
preprocessor with a fresh vs a pre-allocated output buffer, and publishing a latent-sized Image with and without
a matched reliable subscriber in another process.

    python bench/micro_node_costs.py
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np

import harness  # noqa: F401  (puts the repository on sys.path)

SINK = """
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
rclpy.init(); node = rclpy.create_node('micro_sink')
node.create_subscription(Image, '/micro/latent', lambda m: None, QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
rclpy.spin(node)
"""


def median_us(fn, n: int = 300) -> float:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return float(np.median(samples) * 1e6)


def main() -> int:
    import cv2
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image

    from sage_ros.runtime.image_codec import numpy_to_image

    os.environ["ROS_DOMAIN_ID"] = str(101 + os.getpid() % 100)
    rng = np.random.default_rng(0)
    for height, width in ((480, 640), (720, 1280)):
        frame = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        raw = serialize_message(numpy_to_image(frame, "rgb8"))
        print(f"{width}x{height}: rclpy deserialize {median_us(lambda: deserialize_message(raw, Image), 50):.0f} us")
        for threads in (1, 2):
            cv2.setNumThreads(threads)
            cost = median_us(lambda: cv2.resize(frame, (64, 64), interpolation=cv2.INTER_AREA))
            print(f"{width}x{height}: cv2 INTER_AREA -> 64x64, {threads} thread(s): {cost:.0f} us")
    from sage_ros.runtime.preprocess import Preprocessor

    frames = [rng.integers(0, 255, (480, 640, 3), dtype=np.uint8) for _ in range(2)]
    for size, input_range in ((64, (0.0, 1.0)), (224, (-1.0, 1.0))):
        for reuse in (False, True):  # a pre-allocated output buffer vs a fresh one per call
            pre = Preprocessor(size, input_range, "resize", reuse_output=reuse)
            cost = median_us(lambda: pre(frames), 200)
            print(f"preprocess 2 x 640x480 -> 2x3x{size}x{size}, {'reused' if reuse else 'fresh'} buffer: {cost:.0f} us")
    rclpy.init()
    node = rclpy.create_node("micro_pub")
    publisher = node.create_publisher(Image, "/micro/latent", QoSProfile(depth=10,
                                                                        reliability=ReliabilityPolicy.RELIABLE))
    latent = numpy_to_image(np.zeros((2, 64), np.float32), "32FC1")
    print(f"publish 2x64 32FC1, no subscriber: {median_us(lambda: publisher.publish(latent)):.1f} us")
    sink = subprocess.Popen([sys.executable, "-c", SINK], env=dict(os.environ))
    try:
        deadline = time.time() + 30
        while publisher.get_subscription_count() == 0 and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)

        def paced():
            publisher.publish(latent)

        samples = []
        for _ in range(300):  # 60 Hz, as a node would publish
            t0 = time.perf_counter()
            paced()
            samples.append(time.perf_counter() - t0)
            time.sleep(1 / 60)
        print(f"publish 2x64 32FC1, 1 reliable subscriber in another process: {np.median(samples) * 1e6:.0f} us")
    finally:
        sink.terminate()
        sink.wait()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
