"""Humble's rclpy Python surface, simulated over the installed (Kilted) rclpy, for test_ros_humble.py.

What differs on Humble for what sage_ros uses (read in ros2/rclpy, branch humble, commit HUMBLE_COMMIT):
- there is no `rclpy.event_handler` module (it arrived in Iron); the event callback containers live in
  `rclpy.qos_event`, with keyword-only signatures that have no `matched` (no rmw matched events) and no
  `incompatible_type`;
- `Subscription.get_publisher_count()` does not exist (Node.count_publishers does).

`install()` makes the running interpreter look like that to code imported afterwards: `import rclpy.event_handler`
fails, `rclpy.qos_event` has Humble's classes (they hand Kilted's machinery only the events Humble knows, so a
`matched` attribute set on them is ignored, as Humble ignores it), `Subscription.get_publisher_count` is gone.
Kilted's own modules are imported first so that they keep the real classes they need.

Run as a script, it starts an encoder executable under the simulation:
    python test/humble_rclpy.py tinyvae --ros-args -p ...
"""
from __future__ import annotations

import sys
import types

HUMBLE_COMMIT = "b488272b1ba88c703080bfd605417f013697ee40"  # ros2/rclpy humble, 2024-11-25


def install() -> types.ModuleType:
    import rclpy
    import rclpy.lifecycle  # noqa: F401 - Kilted internals bind their event_handler imports now
    import rclpy.node  # noqa: F401
    import rclpy.subscription
    from rclpy import event_handler as kilted

    qos_event = types.ModuleType("rclpy.qos_event", "Humble's rclpy.qos_event (simulated over Kilted's rclpy).")

    class SubscriptionEventCallbacks:
        """Humble's signature: no `matched`, no `incompatible_type`."""

        def __init__(self, *, deadline=None, incompatible_qos=None, liveliness=None, message_lost=None,
                     use_default_callbacks: bool = True) -> None:
            self.deadline = deadline
            self.incompatible_qos = incompatible_qos
            self.liveliness = liveliness
            self.message_lost = message_lost
            self.use_default_callbacks = use_default_callbacks

        def create_event_handlers(self, callback_group, subscription, topic_name):
            return kilted.SubscriptionEventCallbacks(
                deadline=self.deadline, incompatible_qos=self.incompatible_qos, liveliness=self.liveliness,
                message_lost=self.message_lost, use_default_callbacks=self.use_default_callbacks,
            ).create_event_handlers(callback_group, subscription, topic_name)

    class PublisherEventCallbacks:
        """Humble's signature: no `matched`, no `incompatible_type`."""

        def __init__(self, *, deadline=None, liveliness=None, incompatible_qos=None,
                     use_default_callbacks: bool = True) -> None:
            self.deadline = deadline
            self.liveliness = liveliness
            self.incompatible_qos = incompatible_qos
            self.use_default_callbacks = use_default_callbacks

        def create_event_handlers(self, callback_group, publisher, topic_name):
            return kilted.PublisherEventCallbacks(
                deadline=self.deadline, liveliness=self.liveliness, incompatible_qos=self.incompatible_qos,
                use_default_callbacks=self.use_default_callbacks,
            ).create_event_handlers(callback_group, publisher, topic_name)

    for cls in (SubscriptionEventCallbacks, PublisherEventCallbacks):
        cls.__module__ = "rclpy.qos_event"
        setattr(qos_event, cls.__name__, cls)
    # Humble's other public names of rclpy.qos_event (its QoSEventHandler is Kilted's EventHandler)
    for name in ("QoSPublisherEventType", "QoSSubscriptionEventType", "QoSRequestedDeadlineMissedInfo",
                 "QoSLivelinessChangedInfo", "QoSMessageLostInfo", "QoSRequestedIncompatibleQoSInfo",
                 "QoSOfferedDeadlineMissedInfo", "QoSLivelinessLostInfo", "QoSOfferedIncompatibleQoSInfo",
                 "UnsupportedEventTypeError"):
        setattr(qos_event, name, getattr(kilted, name))
    qos_event.QoSEventHandler = kilted.EventHandler

    sys.modules["rclpy.qos_event"] = qos_event
    rclpy.qos_event = qos_event
    sys.modules["rclpy.event_handler"] = None  # `import rclpy.event_handler` -> ModuleNotFoundError
    del rclpy.event_handler
    if hasattr(rclpy.subscription.Subscription, "get_publisher_count"):
        del rclpy.subscription.Subscription.get_publisher_count
    return qos_event


def main(argv: list[str]) -> int:
    install()
    preset = argv[1] if len(argv) > 1 else "tinyvae"
    sys.argv = [f"{preset}_encoder", *argv[2:]]
    from sage_ros.ros import compat
    from sage_ros.ros.encoder_node import main as encoder_main

    print(f"humble simulation: MATCHED_EVENTS={compat.MATCHED_EVENTS} "
          f"callbacks from {compat.SubscriptionEventCallbacks.__module__}", flush=True)
    return encoder_main(None, preset)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
