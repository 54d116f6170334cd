"""Progress of a long job, written atomically to <run_dir>/progress.json for the compression_node to publish.

Schema (docs/design.md "Offline contract"): {"job", "phase", "step", "total", "loss", "images_per_s", "eta_s",
"done", "error"}. Writes are throttled to at most ~2 per second; `finish` and `fail` always write.
No torch here so that a ROS node can read/poll progress cheaply.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Iterator

from sage_ros.atomic import atomic_write_json

PROGRESS_FILE = "progress.json"
MIN_INTERVAL_S = 0.5


class ProgressWriter:
    """Throttled writer of progress.json. `enabled=False` (non-zero DDP ranks) makes every call a no-op."""

    def __init__(self, run_dir: str | Path, job: str, enabled: bool = True, min_interval_s: float = MIN_INTERVAL_S):
        self.path = Path(run_dir) / PROGRESS_FILE
        self.job = job
        self.enabled = enabled
        self.min_interval_s = min_interval_s
        self._last_write = 0.0
        self.state = {"job": job, "phase": "starting", "step": 0, "total": 0, "loss": None,
                      "images_per_s": None, "eta_s": None, "done": False, "error": None}

    def update(self, phase: str, step: int, total: int, loss: float | None = None,
               images_per_s: float | None = None, force: bool = False) -> None:
        if images_per_s is None:  # keep the last measured rate through evaluation phases
            images_per_s = self.state.get("images_per_s")
        eta = None
        if images_per_s and total and step <= total and self.state.get("_batch"):
            eta = (total - step) * self.state["_batch"] / images_per_s
        self.state.update(phase=phase, step=int(step), total=int(total),
                          loss=_finite_or_none(loss), images_per_s=_finite_or_none(images_per_s),
                          eta_s=_finite_or_none(eta))
        self._write(force)

    def set_batch_size(self, batch_size: int) -> None:
        """Images per step, so that eta_s can be derived from images_per_s."""
        self.state["_batch"] = int(batch_size)

    def finish(self, phase: str = "done") -> None:
        self.state.update(phase=phase, done=True, eta_s=0.0)
        self._write(force=True)

    def fail(self, error: str, phase: str = "failed") -> None:
        self.state.update(phase=phase, done=True, error=str(error))
        self._write(force=True)

    @contextlib.contextmanager
    def fail_on_error(self) -> Iterator[None]:
        """Record any exception of the block as the job's error (phase "failed"), then let it propagate."""
        try:
            yield
        except Exception as exc:
            self.fail(f"{type(exc).__name__}: {exc}")
            raise

    def _write(self, force: bool) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_write < self.min_interval_s:
            return
        self._last_write = now
        atomic_write_json(self.path, {k: v for k, v in self.state.items() if not k.startswith("_")})


def read_progress(run_dir: str | Path) -> dict | None:
    """The last progress written into run_dir, or None if there is none yet."""
    path = Path(run_dir) / PROGRESS_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def _finite_or_none(value):
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
