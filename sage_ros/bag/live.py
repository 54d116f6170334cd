"""rclpy helpers shared by `bag play` and `bag record`: message classes by name, QoS, clean stop on signals."""
from __future__ import annotations

import importlib
import signal
import threading

import rclpy
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from rclpy.signals import SignalHandlerOptions

from sage_ros.bag.common import BagError

# Named QoS choices for the command line. "sensor" is rclpy's sensor-data profile (best effort, depth 5).
QOS_CHOICES = ("sensor", "reliable", "recorded")


def message_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> the rclpy class sensor_msgs.msg.Image (its package must be installed)."""
    package, kind, name = msgtype.split("/") if msgtype.count("/") == 2 else ("", "", "")
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise BagError(f"message type {msgtype!r} is not installed here ({exc})") from exc


def named_qos(name: str, depth: int = 10) -> QoSProfile:
    if name == "sensor":
        return qos_profile_sensor_data
    if name == "reliable":
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE)
    if name == "best_effort":
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.BEST_EFFORT)
    raise BagError(f"unknown QoS {name!r}; choose from {QOS_CHOICES}")


def qos_from_bag(qos) -> QoSProfile:
    """rosbags Qos (as recorded in the bag's metadata) -> rclpy QoSProfile (history, depth, reliability, durability)."""
    reliable = qos.reliability.name == "RELIABLE"
    transient = qos.durability.name == "TRANSIENT_LOCAL"
    return QoSProfile(
        history=HistoryPolicy.KEEP_ALL if qos.history.name == "KEEP_ALL" else HistoryPolicy.KEEP_LAST,
        depth=max(1, qos.depth),
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if transient else DurabilityPolicy.VOLATILE,
    )


def parse_qos_overrides(specs: list[str] | None, choices=QOS_CHOICES) -> dict[str, str]:
    """['/topic=reliable', ...] -> {'/topic': 'reliable'}."""
    overrides = {}
    for spec in specs or []:
        topic, sep, name = spec.partition("=")
        if not sep or name not in choices:
            raise BagError(f"bad --qos {spec!r}: expected TOPIC=one of {choices}")
        overrides[topic] = name
    return overrides


class StopFlag:
    """Set by SIGINT / SIGTERM, so loops finish their current message and close files instead of dying mid-write."""

    def __init__(self):
        self.event = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: self.event.set())

    def __bool__(self) -> bool:
        return self.event.is_set()

    def wait(self, seconds: float) -> bool:
        return self.event.wait(max(0.0, seconds))


def init_rclpy(args=None):
    """rclpy without its own signal handlers: ours (StopFlag) decide how to stop, so bags get closed."""
    context = rclpy.context.Context()
    rclpy.init(args=args, context=context, signal_handler_options=SignalHandlerOptions.NO)
    return context
