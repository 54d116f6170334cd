"""The encoder's worker under live max_rate changes and faults (in-process node, frames fed to its callback):
a change takes effect at once (the worker waits on an event, not a sleep), no in-range value breaks it
(1e-12 Hz used to kill the thread with OverflowError), and any exception that ends the worker loop is logged,
counted in /diagnostics at ERROR with last_error, and the worker restarted."""
import threading
import time

import pytest
import rclpy
from rclpy.parameter import Parameter

from ros_helpers import camera_frames, export_test_bundle, header, wait_for
from sage_ros.ros.diagnostics import level_and_message
from sage_ros.ros.worker import RatePacer, run_supervised
from sage_ros.runtime.image_codec import numpy_to_image


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    return export_test_bundle("TinyVAE", tmp_path_factory.mktemp("bundles") / "tiny")


@pytest.fixture
def node(tiny_bundle):
    from sage_ros.ros.encoder_node import SUCCESS, EncoderNode

    context = rclpy.Context()
    rclpy.init(context=context)
    node = EncoderNode("tinyvae", context=context, parameter_overrides=[
        Parameter("bundle", value=str(tiny_bundle)), Parameter("backend", value="onnxruntime"),
        Parameter("device", value="cpu")])
    assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS
    yield node
    node.on_shutdown(None)
    node.destroy_node()
    rclpy.try_shutdown(context=context)


@pytest.fixture(scope="module")
def frame_msgs():
    return [numpy_to_image(frame, "rgb8", header=header(10 + i)) for i, frame in enumerate(camera_frames(3))]


def published(node) -> int:
    return node.stats._counts["published"]


def feed_until(node, msg, count: int, timeout: float):
    """Offer the frame every 50 ms (a 20 Hz camera) until `count` latents were published."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if published(node) >= count:
            return True
        node._on_frame(0, msg)
        time.sleep(0.05)
    return published(node) >= count


def test_lowering_then_clearing_max_rate_applies_at_once(node, frame_msgs):
    assert feed_until(node, frame_msgs[0], 1, 30)
    assert node.set_parameters([Parameter("max_rate", value=0.01)])[0].successful
    start = published(node)
    assert feed_until(node, frame_msgs[1], start + 1, 10)  # the first frame after the change goes out ...
    time.sleep(1.0)
    held = published(node)
    assert not feed_until(node, frame_msgs[1], held + 1, 1.5)  # ... then one per 100 s
    assert node.set_parameters([Parameter("max_rate", value=0.0)])[0].successful
    # old code: the worker slept out its 100 s; now the change wakes it (generous bound for a loaded machine)
    assert feed_until(node, frame_msgs[2], held + 3, 15)
    assert node._worker.is_alive() and node.stats._counts["worker_restarts"] == 0


def test_the_smallest_in_range_rate_does_not_kill_the_worker(node, frame_msgs):
    assert node.set_parameters([Parameter("max_rate", value=1e-12)])[0].successful
    before = published(node)
    feed_until(node, frame_msgs[0], before + 2, 3.0)  # one goes out, then the 1e12 s wait begins
    assert published(node) >= before + 1
    assert node._worker.is_alive()
    assert node.stats._counts["worker_restarts"] == 0 and node.stats._counts["errors"] == 0
    assert node.set_parameters([Parameter("max_rate", value=0.0)])[0].successful
    now = published(node)
    assert feed_until(node, frame_msgs[1], now + 2, 15)


def test_a_worker_loop_exception_is_counted_logged_and_the_worker_restarted(node, frame_msgs):
    assert feed_until(node, frame_msgs[0], 1, 30)
    slots = node._slots
    real_take = slots.take
    calls = {"n": 0}

    def failing_take(timeout=None):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OverflowError("timestamp out of range for platform time_t")
        return real_take(timeout)

    slots.take = failing_take
    wait_for(lambda: node.stats._counts["worker_restarts"] >= 1, 10, what="a counted restart")
    snap = node.stats.snapshot()
    level, message = level_and_message(snap, active=True)
    assert level == b"\x02" and "OverflowError" in snap.last_error and "restarted" in message  # ERROR, with last_error
    before = published(node)
    assert feed_until(node, frame_msgs[1], before + 2, 15)  # it produces again


def test_a_dead_worker_thread_is_noticed_by_the_diagnostics_timer(node, frame_msgs):
    worker = node._worker
    node._stop.set()  # ends the thread the way nothing else would; the node still believes it is active
    worker.join(5)
    node._stop.clear()
    node.publish_diagnostics()
    assert node.stats._counts["worker_restarts"] == 1 and node._worker.is_alive()
    before = published(node)
    assert feed_until(node, frame_msgs[0], before + 1, 15)


def test_pacer_and_supervisor_units():
    rate = {"hz": 0.5}
    now = {"t": 100.0}
    pacer = RatePacer(lambda: rate["hz"], clock=lambda: now["t"])
    assert pacer.remaining() == 0.0
    pacer.started()
    assert pacer.remaining() == pytest.approx(2.0)
    rate["hz"] = 1e-12
    assert pacer.remaining() == pytest.approx(1e12)
    rate["hz"] = 0.0
    assert pacer.remaining() <= 0
    stop, crashes = threading.Event(), []
    runs = iter([ValueError("boom"), KeyError("k"), None])

    def loop():
        err = next(runs)
        if err is not None:
            raise err
        stop.set()

    run_supervised(loop, stop, lambda err, trace: crashes.append((type(err).__name__, "Traceback" in trace)))
    assert crashes == [("ValueError", True), ("KeyError", True)]
