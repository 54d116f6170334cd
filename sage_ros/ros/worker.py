"""The encoder's worker thread, as plain parts: the `max_rate` pacing and the supervisor that restarts a worker loop
whatever ends it. No rclpy here (tested without a ROS graph).

Pacing waits on an Event, never a sleep: a live `max_rate` change sets it, so the new rate applies at once (within
one frame period of the new setting), and no wait is longer than MAX_WAIT_S, so no value (1e-12 Hz: 1e12 s) can
overflow a platform timeout.
"""
from __future__ import annotations

import threading
import time
import traceback
from typing import Callable

MAX_WAIT_S = 1.0  # longest single wait; the limit is re-read after each
RESTART_BACKOFF_S = (0.05, 2.0)  # first and largest pause before a crashed worker loop runs again


class RatePacer:
    """When the next inference may start under `max_rate` (0 = no limit), recomputed from the current rate at each
    check, so lowering or clearing the limit releases a waiting worker at once."""

    def __init__(self, rate: Callable[[], float], clock: Callable[[], float] = time.monotonic):
        self._rate, self._clock = rate, clock
        self._last_start: float | None = None
        self.changed = threading.Event()  # set on a max_rate change: the waiting worker looks again

    def period(self) -> float:
        rate = self._rate()
        return 1.0 / rate if rate > 0 else 0.0  # a finite float for every rate in (0, 1000]: 1e-12 -> 1e12 s

    def remaining(self) -> float:
        """Seconds until the next inference is allowed (<= 0: now)."""
        if self._last_start is None:
            return 0.0
        return self._last_start + self.period() - self._clock()

    def wait(self, stop: threading.Event) -> bool:
        """Block until an inference is allowed, the rate changes, or `stop`; True when allowed now."""
        remaining = self.remaining()
        if remaining <= 0:
            return True
        self.changed.clear()
        if self.changed.wait(min(remaining, MAX_WAIT_S)) or stop.is_set():
            return False  # re-check with the new rate (or stop)
        return self.remaining() <= 0

    def started(self) -> None:
        self._last_start = self._clock()

    def notify(self) -> None:
        self.changed.set()


def run_supervised(loop: Callable[[], None], stop: threading.Event, on_crash: Callable[[BaseException, str], None]
                   ) -> None:
    """Run `loop` until it returns with `stop` set. Any exception that escapes it is reported through
    on_crash(error, traceback text) and the loop is started again after a short, growing pause: a worker never
    ends silently while the node is meant to be running."""
    pause = RESTART_BACKOFF_S[0]
    while not stop.is_set():
        started = time.monotonic()
        try:
            loop()
            if stop.is_set():
                return
            raise RuntimeError("worker loop returned while running")
        except Exception as err:  # noqa: BLE001 - whatever it is, it is reported and the loop restarted
            on_crash(err, traceback.format_exc())
        if time.monotonic() - started > 10 * RESTART_BACKOFF_S[1]:
            pause = RESTART_BACKOFF_S[0]  # it had run well for a while: a new fault starts the backoff over
        if stop.wait(pause):
            return
        pause = min(pause * 2, RESTART_BACKOFF_S[1])


class SupervisedWorker:
    """The node's worker thread: `loop` under run_supervised, plus `check()` for a timer, which restarts a thread
    that has ended anyway (a BaseException) while the node means it to run. Both report through on_crash(text)."""

    def __init__(self, loop: Callable[[], None], stop: threading.Event, on_crash: Callable[[str], None],
                 name: str = "encoder_worker"):
        self._loop, self._stop, self._on_crash, self._name = loop, stop, on_crash, name
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=run_supervised, args=(self._loop, self._stop, self._crashed),
                                       name=self._name, daemon=True)
        self.thread.start()

    def _crashed(self, err: BaseException, trace: str) -> None:
        self._on_crash(f"{self._name} crashed ({type(err).__name__}: {err}); restarted\n{trace}")

    def check(self, should_run: bool) -> None:
        if should_run and not self._stop.is_set() and (self.thread is None or not self.thread.is_alive()):
            self._on_crash(f"{self._name} thread had ended; restarted")
            self.start()

    def join(self, timeout: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout)
        self.thread = None

    def is_alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()
