"""The latched `<output>/info` topic (std_msgs/String JSON, runtime/latent_info.py): its QoS and its name.

Reliable + transient-local, keep last 1: the DDS writer keeps the last info, so a subscriber that joins at any time
(with the same QoS) gets it at once, and a new model's info replaces the old one. A volatile subscriber also
matches (it just misses infos sent before it joined); a best-effort one matches too.
"""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

INFO_SUFFIX = "/info"


def info_qos() -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


def info_topic(output_topic: str) -> str:
    """'latent' -> 'latent/info', '/front/puzzle' -> '/front/puzzle/info'."""
    return output_topic.rstrip("/") + INFO_SUFFIX
