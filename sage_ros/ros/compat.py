"""The rclpy API differences between ROS 2 Humble (JetPack 6), Jazzy (JetPack 7) and Kilted, in one place.

Read against rclpy's humble, jazzy and master branches. What sage_ros uses and where the distros differ:

- QoS event callbacks live in `rclpy.event_handler` since Iron; Humble has them in `rclpy.qos_event` (Jazzy and
  Kilted keep `qos_event` only as a deprecated re-export that warns on import, so it is the fallback, not the
  first choice).
- `SubscriptionEventCallbacks(matched=...)` (rmw "matched" events: a publisher connected or left) arrived in
  Iron. Humble has no such event, so `watch_publishers` polls the publisher count of the subscription's topic on
  a timer and calls the same callback with the same fields (`current_count`, `current_count_change`,
  `total_count`, `total_count_change`): the same log lines and the same diagnostics on every distro.
- Everything else the package uses is the same on all three (checked in humble's sources): `rclpy.init(args,
  context, domain_id, signal_handler_options)`, `rclpy.signals.SignalHandlerOptions`, `rclpy.try_shutdown`,
  `rclpy.executors.ExternalShutdownException`, `rclpy.lifecycle` (LifecycleNode, LifecycleState,
  TransitionCallbackReturn, create/destroy_lifecycle_publisher, trigger_configure/activate),
  `qos_policy_name_from_kind`, ParameterDescriptor fields (read_only, integer/floating_point_range,
  additional_constraints, dynamic_typing: since Galactic, so float parameters take integers on Humble too), `Node.count_publishers`, `Node.get_publishers_info_by_topic`,
  `Publisher.publish(bytes)` (serialized messages) and the logger's `warning(..., throttle_duration_sec=)`.

test/test_ros_humble.py runs the encoder node over real DDS with Humble's Python surface simulated (no
`rclpy.event_handler`, a `rclpy.qos_event` with Humble's signatures) so that this module keeps working there.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Optional

try:  # Iron, Jazzy, Kilted, Rolling
    from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import PublisherEventCallbacks, SubscriptionEventCallbacks

__all__ = ["MATCHED_EVENTS", "MatchedInfo", "PublisherEventCallbacks", "PublisherWatch",
           "SubscriptionEventCallbacks", "subscription_event_callbacks", "watch_publishers"]


def _accepts(cls: type, keyword: str) -> bool:
    try:
        return keyword in inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):  # no introspectable signature: assume the older API
        return False


# True where the middleware reports publishers (dis)connecting as events (Iron and later).
MATCHED_EVENTS = _accepts(SubscriptionEventCallbacks, "matched")


@dataclass(frozen=True)
class MatchedInfo:
    """The fields of rmw's matched status (QoSSubscriptionMatchedInfo), built from polled publisher counts."""
    total_count: int
    total_count_change: int
    current_count: int
    current_count_change: int


def subscription_event_callbacks(*, incompatible_qos: Optional[Callable] = None,
                                 message_lost: Optional[Callable] = None,
                                 matched: Optional[Callable] = None) -> SubscriptionEventCallbacks:
    """SubscriptionEventCallbacks for this distro. Where `matched` cannot be registered (Humble) it is kept as the
    instance's `matched` attribute (Humble's class ignores it) for `watch_publishers` to poll for."""
    if MATCHED_EVENTS:
        return SubscriptionEventCallbacks(incompatible_qos=incompatible_qos, message_lost=message_lost,
                                          matched=matched)
    callbacks = SubscriptionEventCallbacks(incompatible_qos=incompatible_qos, message_lost=message_lost)
    callbacks.matched = matched
    return callbacks


class PublisherWatch:
    """Polls the number of publishers on a subscription's topic and reports every change as a MatchedInfo.

    Stands in for the matched event on Humble. `Node.count_publishers` counts every publisher on the topic,
    including ones whose QoS is incompatible (those are logged separately by the incompatible-QoS event), so on
    Humble "connected" means "discovered on the topic"."""

    def __init__(self, node, topic: str, matched: Callable[[MatchedInfo], None], period: float):
        self._node, self._topic, self._matched = node, topic, matched
        self._current, self._total = 0, 0
        self._timer = node.create_timer(period, self.poll)

    def poll(self) -> None:
        try:
            count = self._node.count_publishers(self._topic)
        except Exception:  # noqa: BLE001 - the node or context is going away; the next poll (if any) retries
            return
        change = count - self._current
        if change == 0:
            return
        self._total += max(change, 0)
        self._current = count
        self._matched(MatchedInfo(total_count=self._total, total_count_change=max(change, 0),
                                  current_count=count, current_count_change=change))

    def destroy(self) -> None:
        if self._timer is not None:
            self._node.destroy_timer(self._timer)
            self._timer = None


def watch_publishers(node, subscription, callbacks, period: float = 0.5) -> Optional[PublisherWatch]:
    """Where the distro has no matched event, poll for `callbacks.matched` (see subscription_event_callbacks);
    None where the middleware reports it itself. Destroy the returned watch with the subscription."""
    matched = getattr(callbacks, "matched", None)
    if MATCHED_EVENTS or matched is None:
        return None
    return PublisherWatch(node, subscription.topic_name, matched, period)
