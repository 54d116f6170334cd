"""`sage-ros bag play` over real DDS: a separate player process, a subscriber in this process."""
import time

import pytest
from rclpy.qos import qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image

from bag_helpers import BAG_T0_NS, private_node, sage_ros, spin_until, write_image_bag


@pytest.fixture
def listener():
    """A node in this process that stores (receive time, bytes) per topic, raw."""
    with private_node("bag_play_listener") as (node, executor):
        received = {}

        def listen(topic, msg_class=Image, raw=True):
            received[topic] = []
            node.create_subscription(msg_class, topic, lambda m: received[topic].append((time.monotonic(), m)),
                                     qos_profile_sensor_data if msg_class is Image else 10, raw=raw)
            return received[topic]

        yield executor, listen


def play_and_collect(executor, args, done, timeout=20.0):
    """Run the player to completion while spinning this process's subscriptions; returns its output."""
    player = sage_ros("bag", "play", *args)
    spin_until(executor, lambda: player.poll() is not None, timeout)
    spin_until(executor, done, 1.0)  # last messages may still be in flight
    output = player.communicate(timeout=5)[0]
    assert player.returncode == 0, output
    return output


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_play_publishes_recorded_bytes_in_order_with_scaled_timing(tmp_path, listener, storage):
    executor, listen = listener
    frames = write_image_bag(tmp_path / "in", count=10, fps=10.0, storage=storage)
    got = listen("/camera/image_raw")
    output = play_and_collect(executor, [tmp_path / "in", "--rate", "2", "--topics", "/camera/image_raw",
                                         "--wait-for-subscribers", "1"], lambda: len(got) == 10)
    assert [d[-1] for _, d in got] == [f[-1] for f in frames]
    assert [data for _, data in got] == frames  # exact recorded CDR: header stamps and pixels untouched
    span = got[-1][0] - got[0][0]
    assert 0.9 * 0.45 <= span < 0.45 + 0.6, span  # 0.9 s of bag at rate 2; never faster than asked
    assert "/camera/image_raw: 10 published, 0 publish errors" in output


def test_play_remap_clock_and_start_offset(tmp_path, listener):
    executor, listen = listener
    frames = write_image_bag(tmp_path / "in", count=10, fps=10.0)
    got = listen("/cam2/image")
    ticks = listen("/clock", Clock, raw=False)
    play_and_collect(executor, [tmp_path / "in", "--topics", "/camera/image_raw", "--remap", "/camera/image_raw:=/cam2/image",
                                "--start-offset", "0.45", "--clock", "50", "--wait-for-subscribers", "1"],
                     lambda: len(got) == 5)
    assert [data for _, data in got] == frames[5:]  # frames at 0.5..0.9 s
    clock_ns = [m.clock.sec * 1_000_000_000 + m.clock.nanosec for _, m in ticks]
    assert len(clock_ns) >= 10, len(clock_ns)  # ~0.45 s at 50 Hz
    assert clock_ns == sorted(clock_ns)
    assert BAG_T0_NS + 450_000_000 <= clock_ns[0] and clock_ns[-1] <= BAG_T0_NS + 1_000_000_000


def test_play_loop_repeats_until_stopped(tmp_path, listener):
    executor, listen = listener
    write_image_bag(tmp_path / "in", count=3, fps=20.0, extra_string_topic=False)
    got = listen("/camera/image_raw")
    player = sage_ros("bag", "play", tmp_path / "in", "--loop", "--rate", "4", "--wait-for-subscribers", "1")
    assert spin_until(executor, lambda: len(got) >= 9, 15.0), len(got)  # three passes at least
    player.send_signal(2)  # SIGINT: stops cleanly and still prints its summary
    output = player.communicate(timeout=10)[0]
    assert player.returncode == 0 and "interrupted" in output, output


@pytest.mark.parametrize("args, message", [
    (["--topics", "/nope"], "topics not in bag"),
    (["--remap", "/camera/image_raw"], "bad remap"),
    (["--wait-for-subscribers", "1", "--wait-timeout", "0.3"], "timed out"),
])
def test_play_rejects_bad_input_with_a_clear_error(tmp_path, args, message):
    write_image_bag(tmp_path / "in", count=2)
    player = sage_ros("bag", "play", tmp_path / "in", *args)
    output = player.communicate(timeout=20)[0]
    assert player.returncode == 1 and message in output, output
