"""Run-time counters of an encoder node and their /diagnostics rendering.

`EncoderStats` is touched from the subscription callbacks (executor thread) and the inference worker, so
every update takes one lock; `snapshot()` returns rates over the interval since the previous snapshot and
latency percentiles over the last `window` frames.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

COUNTERS = ("received", "published", "dropped", "lost", "bad_frames", "errors", "publish_errors", "worker_restarts")


@dataclass
class Snapshot:
    counts: dict[str, int]          # totals since start
    interval_s: float
    input_rate: float               # frames/s received in the interval
    output_rate: float              # messages/s published in the interval
    new: dict[str, int]             # increments in the interval
    latency_ms: dict[str, float]    # p50 / p90 / p99 of receive -> publish, over the last window
    inference_ms: dict[str, float]  # p50 / p90 / p99 of one backend call
    last_error: str = ""
    extra: dict[str, str] = field(default_factory=dict)


class EncoderStats:
    def __init__(self, window: int = 600, clock=time.monotonic):
        self._lock = threading.Lock()
        self._clock = clock
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._previous = dict(self._counts)
        self._previous_time = clock()
        self._latency = deque(maxlen=window)
        self._inference = deque(maxlen=window)
        self.last_error = ""

    def add(self, counter: str, n: int = 1) -> None:
        with self._lock:
            self._counts[counter] += n

    def error(self, message: str, counter: str = "errors") -> None:
        with self._lock:
            self._counts[counter] += 1
            self.last_error = message

    def observe(self, latency_s: float, inference_s: float | None = None) -> None:
        with self._lock:
            self._latency.append(latency_s)
            if inference_s is not None:
                self._inference.append(inference_s)

    def snapshot(self) -> Snapshot:
        with self._lock:
            now = self._clock()
            interval = max(now - self._previous_time, 1e-9)
            new = {name: self._counts[name] - self._previous[name] for name in COUNTERS}
            self._previous, self._previous_time = dict(self._counts), now
            return Snapshot(counts=dict(self._counts), interval_s=interval, new=new,
                            input_rate=new["received"] / interval, output_rate=new["published"] / interval,
                            latency_ms=_percentiles_ms(self._latency),
                            inference_ms=_percentiles_ms(self._inference), last_error=self.last_error)


def _percentiles_ms(samples) -> dict[str, float]:
    if not samples:
        return {"p50": float("nan"), "p90": float("nan"), "p99": float("nan")}
    p50, p90, p99 = np.percentile(np.asarray(samples) * 1e3, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99)}


def level_and_message(snap: Snapshot, active: bool, no_publisher: str = "") -> tuple[bytes, str]:
    """ERROR on inference/publish errors in the interval, WARN on bad frames, heavy drops or no input
    (`no_publisher`: which input topics have no publisher, with similar topics that do exist)."""
    if not active:
        return DiagnosticStatus.WARN, "inactive (lifecycle); not encoding"
    if snap.new["worker_restarts"]:
        return DiagnosticStatus.ERROR, f"encoder worker restarted: {snap.last_error}"
    if snap.new["errors"] or snap.new["publish_errors"]:
        return DiagnosticStatus.ERROR, f"errors in the last interval: {snap.last_error}"
    if snap.new["bad_frames"]:
        return DiagnosticStatus.WARN, f"{snap.new['bad_frames']} bad input frames in the last interval"
    if snap.new["lost"]:
        return DiagnosticStatus.WARN, (f"{snap.new['lost']} frames lost in the middleware (best-effort input; "
                                       "see docs/ros.md: large frames)")
    if snap.new["received"] == 0 and no_publisher:
        return DiagnosticStatus.WARN, f"no input frames: {no_publisher}"
    if snap.new["received"] == 0:
        return DiagnosticStatus.WARN, "no input frames (check the topic and qos_reliability)"
    if snap.new["dropped"] > snap.new["received"] / 2:
        return DiagnosticStatus.OK, (f"encoding {snap.output_rate:.1f} of {snap.input_rate:.1f} frames/s "
                                     "(latest frame wins; rest dropped)")
    return DiagnosticStatus.OK, f"encoding {snap.output_rate:.1f} frames/s"


def diagnostic_array(snap: Snapshot, *, name: str, hardware_id: str, info: dict[str, str], active: bool,
                     stamp, no_publisher: str = "") -> DiagnosticArray:
    """One DiagnosticStatus with every counter, rate and percentile as key/values."""
    level, message = level_and_message(snap, active, no_publisher)
    values = {
        "input_rate_hz": f"{snap.input_rate:.2f}",
        "output_rate_hz": f"{snap.output_rate:.2f}",
        **{f"latency_{key}_ms": f"{value:.2f}" for key, value in snap.latency_ms.items()},
        **{f"inference_{key}_ms": f"{value:.2f}" for key, value in snap.inference_ms.items()},
        "frames_received": str(snap.counts["received"]),
        "frames_published": str(snap.counts["published"]),
        "dropped_frames": str(snap.counts["dropped"]),
        "lost_frames": str(snap.counts["lost"]),
        "bad_frames": str(snap.counts["bad_frames"]),
        "errors": str(snap.counts["errors"]),
        "publish_errors": str(snap.counts["publish_errors"]),
        "worker_restarts": str(snap.counts["worker_restarts"]),
        "last_error": snap.last_error,
        **({"inputs_without_publisher": no_publisher} if no_publisher else {}),
        **info,
    }
    status = DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                              values=[KeyValue(key=key, value=value) for key, value in values.items()])
    return DiagnosticArray(header=_header(stamp), status=[status])


def encoder_info(node) -> dict[str, str]:
    """The encoder node's key/values for /diagnostics: state, settings, resolved topics, backend and model."""
    info = {"state": "active" if node._active else ("inactive" if node.backend else "unconfigured"),
            "crop_mode": node._live["crop_mode"], "max_rate": str(node._live["max_rate"]),
            "input_transport": node._param("input_transport"),
            "image_topics": " ".join(node.resolve_topic_name(c.input_topic) for c in node.cameras)
            or " ".join(node._param("image_topics")),
            "publishers_matched": " ".join(str(c.publishers_matched) for c in node.cameras)}
    if node.backend is not None:
        described = node.backend.describe()
        info.update({"backend": str(described.get("backend")), "device": str(described.get("device")),
                     "model": node.bundle.name, "architecture": node.bundle.architecture,
                     "precision": node.bundle.precision, "bundle": str(node.bundle.path)})
        if "providers" in described:
            info["providers"] = " ".join(described["providers"])
    return info


def _header(stamp):
    from std_msgs.msg import Header

    return Header(stamp=stamp)


def status_values(array: DiagnosticArray) -> dict[str, str]:
    """Key/values of the first status, for consumers and tests."""
    return {kv.key: kv.value for kv in array.status[0].values}
