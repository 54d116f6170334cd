"""The latched `<output>/info` topic (std_msgs/String JSON, runtime/latent_info.py): its QoS and its name.

Reliable + transient-local, keep last 1: the DDS writer keeps the last info, so a subscriber that joins at any time
(with the same QoS) gets it at once, and a new model's info replaces the old one. A volatile subscriber also
matches (it just misses infos sent before it joined); a best-effort one matches too.
"""
from __future__ import annotations

import threading
import time

from rclpy.duration import Duration
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

INFO_SUFFIX = "/info"
POLL_S = 0.02  # how often AckWatch looks at the acknowledgements


def info_qos() -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


def info_topic(output_topic: str) -> str:
    """'latent' -> 'latent/info', '/front/puzzle' -> '/front/puzzle/info'."""
    return output_topic.rstrip("/") + INFO_SUFFIX


class AckWatch:
    """Waits for subscribers to acknowledge a newly published info, off the frame path (its own thread per change),
    bounded in total (`timeout` s for all of a change's publishers together), and logs a WARN when some did not.

    Correctness does not depend on it: every latent carries its model's fingerprint (runtime/latent_info.py), so a
    consumer whose info is late holds or drops latents instead of misreading them. The wait only tells the operator
    that a subscriber is stalled (e.g. a suspended process), without stalling any camera or the parameter call."""

    def __init__(self, logger, timeout: float):
        self._logger, self._timeout = logger, timeout
        self._threads: list = []
        self.changes = 0   # infos published (each gets its own bounded wait)
        self.timeouts = 0  # changes not fully acknowledged in time (for tests and diagnostics)

    def watch(self, publishers: list, what: str) -> None:
        self._threads = [t for t in self._threads if t.is_alive()]
        thread = threading.Thread(target=self._wait, args=(list(publishers), what), name="info_ack", daemon=True)
        self._threads.append(thread)
        self.changes += 1
        thread.start()

    def _wait(self, publishers: list, what: str) -> None:
        # Polled with zero timeouts: rclpy's wait_for_all_acked keeps the GIL while it blocks, so one long wait,
        # even on this thread, would stall every other Python thread of the node (the frame path included).
        deadline = time.monotonic() + self._timeout
        pending = list(publishers)
        while pending:
            still = []
            for publisher in pending:
                try:
                    if not publisher.wait_for_all_acked(Duration(seconds=0)):
                        still.append(publisher)
                except Exception:  # noqa: BLE001 - publisher destroyed meanwhile (cleanup): nothing to wait for
                    continue
            pending = still
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
        late = pending
        if not late:
            return
        self.timeouts += 1
        try:
            matched = sum(p.get_subscription_count() for p in late)
            topics = ", ".join(p.topic_name for p in late)
        except Exception:  # noqa: BLE001
            matched, topics = 0, "(publisher gone)"
        self._logger.warning(
            f"info for {what} not acknowledged within {self._timeout:.1f} s: at least 1 of the {matched} "
            f"subscriber(s) of {topics} did not acknowledge (stalled or suspended?). Encoding goes on; every latent "
            "carries its model's fingerprint, so consumers hold it until the info arrives")

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout)
