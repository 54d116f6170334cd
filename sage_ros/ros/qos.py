"""QoS profiles of the encoder node and the event callbacks that make QoS mismatches loud.

A subscriber that requests `reliable` never matches a `best_effort` camera driver, and ROS says nothing by
default beyond one line: the top complaint about inference nodes is "no output". So the input side defaults
to sensor-data QoS (best effort, keep last 1, which matches every publisher) and every incompatible-QoS
event is logged with the parameter that fixes it.
"""
from __future__ import annotations

from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_policy_name_from_kind)

from sage_ros.ros.compat import PublisherEventCallbacks, SubscriptionEventCallbacks, subscription_event_callbacks

_RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}


def input_qos(reliability: str = "best_effort", depth: int = 1) -> QoSProfile:
    """Camera input: keep last `depth`, volatile; best effort by default (rclpy's qos_profile_sensor_data
    uses depth 5; 1 is enough because the node only ever encodes the newest frame)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=_RELIABILITY[reliability],
                      durability=DurabilityPolicy.VOLATILE)


def output_qos(depth: int = 10) -> QoSProfile:
    """Latents / puzzles / reconstructions: reliable (small messages that consumers must not miss), volatile,
    so both reliable and best-effort subscribers match."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def subscription_events(logger, topic: str, on_matched=None, on_lost=None,
                        reliable: bool = False) -> SubscriptionEventCallbacks:
    """Log incompatible publishers on `topic` (with the fix), report publisher (dis)connections, and count
    samples the middleware lost (best-effort fragments of large frames: invisible to the node otherwise).
    On Humble (no matched event) the node must also call compat.watch_publishers with these callbacks."""

    def incompatible(info) -> None:
        policy = qos_policy_name_from_kind(info.last_policy_kind)
        logger.error(f"incompatible QoS on '{topic}': a publisher's {policy} policy does not match this "
                     f"subscription (total {info.total_count}); no frames arrive from it. For a best-effort "
                     "camera set qos_reliability:=best_effort (the default); check with `ros2 topic info -v "
                     f"{topic}`.")

    def matched(info) -> None:
        if on_matched is not None:
            on_matched(info.current_count)
        if info.current_count_change > 0:
            logger.info(f"'{topic}': publisher connected ({info.current_count} now)")
        elif info.current_count_change < 0:
            logger.warning(f"'{topic}': publisher left ({info.current_count} now)")

    def lost(info) -> None:
        if on_lost is not None:
            on_lost(info.total_count_change)
        logger.warning(lost_message(topic, info.total_count, reliable), throttle_duration_sec=10.0)

    return subscription_event_callbacks(incompatible_qos=incompatible, matched=matched, message_lost=lost)


def lost_message(topic: str, total: int, reliable: bool) -> str:
    """The message-lost warning; it names best-effort fragments as the cause only when the input is best effort."""
    if reliable:
        return (f"'{topic}': the middleware reports {total} frames lost so far on a reliable input (the publisher's "
                "history overran before delivery, or the publisher is best effort); a deeper qos_depth or a "
                "slower publisher helps")
    return (f"'{topic}': the middleware lost {total} frames so far (best-effort input of large frames); fix: run "
            "`export FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA` in the shell of every process (camera, encoder, "
            "subscribers) before starting it; see docs/ros.md 'Large frames'")


def publisher_events(logger, topic: str) -> PublisherEventCallbacks:
    """Log subscribers whose requested QoS this publisher cannot offer (e.g. transient_local)."""

    def incompatible(info) -> None:
        policy = qos_policy_name_from_kind(info.last_policy_kind)
        logger.error(f"incompatible QoS on '{topic}': a subscriber requests a {policy} this reliable/volatile "
                     f"publisher does not offer (total {info.total_count}); it receives nothing.")

    return PublisherEventCallbacks(incompatible_qos=incompatible)
