"""Pass-through node: the node-level baseline. Subscribes the same image topics with the same QoS as the encoder
node and republishes a tiny message with the source header on <ns>/latent, doing no decode and no inference.

Encoder latency minus this node's latency, measured in the same run, is what the encoder adds on top of DDS and
rclpy (message transport, deserialization into Python, executor scheduling).

    python bench/passthrough_node.py --ros-args -p image_topics:=[/cam0/image_raw] -p input_transport:=raw
"""
from __future__ import annotations

import sys

import rclpy
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image


class PassThrough(Node):
    def __init__(self):
        super().__init__("passthrough")
        topics = self.declare_parameter("image_topics", ["image"]).value
        compressed = self.declare_parameter("input_transport", "raw").value == "compressed"
        reliability = self.declare_parameter("qos_reliability", "best_effort").value
        output_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
        # the encoder node's input QoS: keep last 1, best effort (its default, sensor data) or reliable
        self._input_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                                     reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable"
                                     else ReliabilityPolicy.BEST_EFFORT)
        self._keep = []
        for topic in topics:
            namespace = topic.rsplit("/", 1)[0] + "/" if "/" in topic else ""
            publisher = self.create_publisher(Image, namespace + "latent", output_qos)
            self._keep.append(self.create_subscription(
                CompressedImage if compressed else Image, topic + ("/compressed" if compressed else ""),
                lambda msg, pub=publisher: self._forward(msg, pub), self._input_qos))

    @staticmethod
    def _forward(msg, publisher) -> None:
        out = Image(header=msg.header, height=2, width=1, encoding="32FC1", step=4)
        out.data = b"\0" * 8  # 2 x 1 float32, the shape of a 1-dim latent
        publisher.publish(out)


def main() -> int:
    rclpy.init(args=sys.argv)
    node = PassThrough()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
