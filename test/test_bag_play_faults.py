"""`bag play` never spins and never lies: nothing to play, bad rates, payloads the middleware cannot read.

Before (9ec98e2): `--loop` on a 0-message bag or with `--start-offset` past the end spun at 100 % CPU forever,
playing nothing (without --loop: "played 0 messages", exit 0); `--rate nan` was accepted and played nothing
forever; a 0-byte payload was published as it was (with --qos reliable the middleware then stalled ~5 s and the
next frames were lost) and the summary did not mention it. Now: one error line and exit 1 before anything
plays, rates refused at argument parsing (exit 2), and each payload is deserialised before it is published:
an undecodable one is skipped, counted and reported in the summary.
"""
import subprocess
import sys

import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosbags.rosbag2 import StoragePlugin, Writer
from sensor_msgs.msg import Image

from bag_helpers import BAG_T0_NS, REPO, image_msg, private_node, sage_ros, spin_until, write_image_bag
from sage_ros.bag.common import typestore

IMAGE = "sensor_msgs/msg/Image"


def _play(*args, timeout=30):
    """Run `sage-ros bag play ARGS` to its end; a player still running at `timeout` (a spin) is killed and fails."""
    player = sage_ros("bag", "play", *args)
    try:
        output = player.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        player.kill()
        player.communicate()
        pytest.fail(f"bag play {args} still running after {timeout} s (spinning, playing nothing)")
    return player.returncode, output


def _empty_bag(path, storage="mcap"):
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        writer.add_connection("/camera/image_raw", IMAGE, typestore=typestore())


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("loop", [["--loop"], []], ids=["loop", "once"])
def test_a_bag_with_no_messages_is_one_error_line_not_a_spin(tmp_path, storage, loop):
    _empty_bag(tmp_path / "empty", storage)
    code, output = _play(tmp_path / "empty", *loop)
    assert code == 1 and "error: nothing to play: the bag holds no messages" in output, output
    assert "Traceback" not in output


@pytest.mark.parametrize("loop", [["--loop"], []], ids=["loop", "once"])
def test_a_start_offset_past_the_end_is_one_error_line_not_a_spin(tmp_path, loop):
    write_image_bag(tmp_path / "in", count=5, fps=10.0)  # 0.4 s of messages
    code, output = _play(tmp_path / "in", "--start-offset", "3", *loop)
    assert code == 1 and "past the bag's end" in output, output


@pytest.mark.parametrize("flag, value", [("--rate", "nan"), ("--rate", "inf"), ("--rate", "-inf"), ("--rate", "0"),
                                         ("--rate", "-1"), ("--rate", "fast"), ("--start-offset", "nan"),
                                         ("--start-offset", "-1"), ("--clock", "inf"), ("--wait-timeout", "nan")])
def test_non_finite_or_non_positive_numbers_are_refused_at_parsing(tmp_path, flag, value):
    write_image_bag(tmp_path / "in", count=2)
    result = subprocess.run([sys.executable, "-m", "sage_ros.cli", "bag", "play", str(tmp_path / "in"), f"{flag}={value}"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"argument {flag}" in result.stderr and value in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_an_undecodable_payload_is_skipped_counted_and_the_rest_arrive(tmp_path):
    """Ten frames, the fourth a 0-byte payload, played reliable: nine arrive, the summary names the skipped one."""
    store = typestore()
    frames = [bytes(store.serialize_cdr(image_msg(store, i), IMAGE)) for i in range(10)]
    frames[3] = b""
    with Writer(tmp_path / "in", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connection = writer.add_connection("/camera/image_raw", IMAGE, typestore=store)
        for i, data in enumerate(frames):
            writer.write(connection, BAG_T0_NS + i * 50_000_000, data)
    with private_node("bag_play_fault_listener") as (node, executor):
        got = []
        node.create_subscription(Image, "/camera/image_raw", lambda m: got.append(bytes(m)),
                                 QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE), raw=True)
        player = sage_ros("bag", "play", tmp_path / "in", "--qos", "reliable", "--wait-for-subscribers", "1")
        spin_until(executor, lambda: player.poll() is not None, 60)
        spin_until(executor, lambda: len(got) == 9, 10)
        output = player.communicate(timeout=10)[0]
    assert player.returncode == 0, output
    assert "/camera/image_raw: 9 published, 0 publish errors, 1 undecodable skipped" in output, output
    assert "skipping an undecodable sensor_msgs/msg/Image message of 0 bytes" in output, output
    assert got == [f for f in frames if f]


def test_a_bag_of_only_undecodable_payloads_plays_nothing_and_says_so(tmp_path):
    with Writer(tmp_path / "in", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connection = writer.add_connection("/camera/image_raw", IMAGE, typestore=typestore())
        for i in range(3):
            writer.write(connection, BAG_T0_NS + i * 10_000_000, b"")
    code, output = _play(tmp_path / "in", "--loop")
    assert code == 1 and "nothing was played (3 undecodable messages skipped" in output, output
