"""Shared by the ROS node tests: test bundles, real camera frames, an encoder node in its own process, and a
third-party test node spun in a background thread (its own rclpy Context, so other test files are unaffected).
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def export_test_bundle(architecture: str, out_dir: Path) -> Path:
    """A seeded, untrained bundle (tests only, never shipped), as the runtime tests make them."""
    from runtime_helpers import export_seeded

    return export_seeded(architecture, "fp32", out_dir)


def camera_frames(count: int = 6, stride: int = 25) -> np.ndarray:
    """Real camera frames (768 x 576 RGB) from the bundled vtest bag's raw topic; fall back to photographs
    shipped with scikit-image when `make data` has not run."""
    try:
        from sage_ros.data import vtest_bag_path
        from sage_ros.data.rosbag import load_bag_images

        return load_bag_images(vtest_bag_path(), "/camera/image_raw", stride=stride, max_frames=count)
    except Exception:  # noqa: BLE001 - DataNotFoundError and friends: use the fallback
        from runtime_helpers import real_frames

        return real_frames(count)


def wait_for(predicate, timeout: float, interval: float = 0.02, what: str = ""):
    """Poll until predicate() is truthy; return its value, or raise AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or getattr(predicate, '__name__', predicate)}")


def resend_until_reply(send, wait, timeout: float, resend_s: float | None = None):
    """send() a service request (-> its future) and wait(future, seconds) for the reply; with `resend_s`, for
    idempotent requests only (parameters, state queries), send it again after every `resend_s` without a reply,
    until `timeout`: a request sent while discovery between two processes is still settling can be lost even
    though the service looks ready (a lost set_parameters reply once failed CI). Returns the last future, which
    is not done when no reply came in time."""
    deadline = time.monotonic() + timeout
    while True:
        future = send()
        remaining = deadline - time.monotonic()
        wait(future, max(0.0, remaining if resend_s is None else min(resend_s, remaining)))
        if future.done() or resend_s is None or time.monotonic() >= deadline:
            return future


class NodeProcess:
    """An encoder executable in its own process; stdout+stderr go to a log file the tests read."""

    def __init__(self, executable: str, ros_args: list[str], log_path: Path, name: str | None = None):
        self.log_path = log_path
        self._log = open(log_path, "wb")
        command = [str(BIN / executable), "--ros-args", *ros_args]
        if name:
            command += ["-r", f"__node:={name}"]
        env = dict(os.environ, RCUTILS_LOGGING_BUFFERED_STREAM="0", PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = 20.0) -> str:
        def seen():
            if self.process.poll() is not None and text not in self.log():
                raise AssertionError(f"node exited ({self.process.returncode}) before logging {text!r}:\n{self.log()}")
            return text in self.log()
        wait_for(seen, timeout, what=f"{text!r} in {self.log_path}")
        return self.log()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log.close()


class Inbox(list):
    subscription = None

    def matched(self) -> bool:
        """True once a publisher is matched (volatile topics: only then can nothing published be missed)."""
        return self.subscription.get_publisher_count() > 0


class TestGraph:
    """A test node in its own rclpy Context, spun by a background executor thread."""

    __test__ = False  # not a pytest class

    def __init__(self, name: str = "ros_test_peer"):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        self.lock = threading.Lock()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except (ExternalShutdownException, Exception):  # noqa: BLE001 - ends with the context
            pass

    def collect(self, msg_type, topic: str, qos=10) -> "Inbox":
        """Subscribe and return the list the messages are appended to (.subscription: the subscription)."""
        received = Inbox()

        def append(msg):
            with self.lock:
                received.append(msg)
        received.subscription = self.node.create_subscription(msg_type, topic, append, qos)
        return received

    def call(self, client, request, timeout: float = 10.0, resend_s: float | None = None):
        """Call a service and return its reply (`resend_s`: see resend_until_reply, idempotent requests only)."""
        def wait(future, seconds: float) -> None:  # the background thread spins
            try:
                wait_for(future.done, seconds)
            except AssertionError:
                client.remove_pending_request(future)

        wait_for(lambda: client.service_is_ready(), timeout)
        future = resend_until_reply(lambda: client.call_async(request), wait, timeout, resend_s)
        assert future.done(), f"timed out after {timeout} s waiting for a reply from {client.srv_name}"
        return future.result()

    def __enter__(self) -> "TestGraph":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        import rclpy

        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5)


def stamp_of(msg) -> tuple[int, int]:
    return msg.header.stamp.sec, msg.header.stamp.nanosec


def header(sec: int, frame_id: str = "camera_optical_frame"):
    from std_msgs.msg import Header

    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = sec, 1000 * sec
    return h


def poison_mu(backend, rows, column: int, value: float) -> None:
    """Make backend.encode write `value` into mu[rows, column] (a broken or overflowing graph, injected)."""
    real_encode = backend.encode

    def poisoned(batch):
        out = real_encode(batch)
        out["mu"] = out["mu"].copy()
        out["mu"][rows, column] = value
        return out

    backend.encode = poisoned
