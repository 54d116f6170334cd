"""Issue #11 finding 5: a `kill -9`'d `bag record` and truncated bags (mcap and sqlite3).

Before: the partial mcap a killed recorder left was refused by rosbags and the mcap indexed reader (no summary, no
metadata.yaml) and, for small messages, was still all in memory (rosbags closes a chunk at 1 MiB); a truncated bag
gave 0 frames. Now: `bag record` closes and flushes a chunk every FLUSH_PERIOD_S, `sage-ros bag recover` writes
the intact prefix out as a complete bag, and play / encode (bag.common.open_reader) read the intact prefix with a
warning saying how much was lost.
"""
import shutil
import signal
import time
from contextlib import closing
from pathlib import Path

import pytest
from mcap_ros2.reader import read_ros2_messages
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosbags.rosbag2 import Reader
from std_msgs.msg import String

from bag_helpers import private_node, sage_ros, spin_until, write_image_bag
from sage_ros.bag.common import open_reader, typestore
from sage_ros.bag.encode import encode_bag
from sage_ros.bag.recover import salvage_to

RATE_HZ = 100.0


@pytest.fixture
def talker():
    with private_node("bag_crash_talker") as node_and_executor:
        yield node_and_executor


def _recovered_numbers(bag: Path) -> list[int]:
    store = typestore()
    with closing(open_reader(bag)) as reader:
        return [int(store.deserialize_cdr(d, c.msgtype).data) for c, _, d in reader.messages()]


def _record_then_kill(tmp_path, talker, count: int, kill_after_s: float | None):
    """Publish `count` numbered strings at RATE_HZ to a recorder; SIGKILL it `kill_after_s` into publishing (None:
    one second after the last). Returns (partial directory, numbers published before the kill)."""
    node, executor = talker
    publisher = node.create_publisher(String, "/crash/chatter", QoSProfile(depth=100,
                                                                           reliability=ReliabilityPolicy.RELIABLE))
    out = tmp_path / "rec"
    recorder = sage_ros("bag", "record", out, "--topics", "/crash/chatter")
    assert spin_until(executor, lambda: publisher.get_subscription_count() > 0, 30), "recorder never subscribed"
    spin_until(executor, lambda: False, 0.5)  # both sides matched
    started = time.monotonic()
    published = 0
    for index in range(count):
        if kill_after_s is not None and time.monotonic() - started >= kill_after_s:
            break
        publisher.publish(String(data=str(index)))
        published += 1
        spin_until(executor, lambda: False, 1.0 / RATE_HZ)
    if kill_after_s is None:
        spin_until(executor, lambda: False, 1.0)
    recorder.send_signal(signal.SIGKILL)
    recorder.communicate(timeout=20)
    assert not out.exists()  # never a bag that looks whole
    partial = tmp_path / f".rec.partial-{recorder.pid}"
    assert partial.is_dir()
    return partial, published


def test_killed_recording_recovers_every_message_it_had(tmp_path, talker):
    partial, published = _record_then_kill(tmp_path, talker, count=300, kill_after_s=None)
    with pytest.raises(Exception):  # rosbags alone cannot read what a killed recorder leaves
        Reader(partial / "rec").open()
    report = salvage_to(partial, tmp_path / "recovered")
    numbers = _recovered_numbers(tmp_path / "recovered")
    print(f"kill -9 one second after the last of {published} messages: recovered {len(numbers)} "
          f"({100.0 * len(numbers) / published:.1f} %)")
    assert numbers == list(range(len(numbers)))  # in order, no duplicates
    assert len(numbers) >= 0.99 * published
    assert report.recovered == len(numbers)
    # the mcap library reads the recovered bag too
    with open(next((tmp_path / "recovered").glob("*.mcap")), "rb") as handle:
        assert sum(1 for _ in read_ros2_messages(handle)) == len(numbers)


def test_killed_mid_stream_loses_at_most_the_last_flush_period(tmp_path, talker, capsys):
    from sage_ros.bag.record import FLUSH_PERIOD_S

    partial, published = _record_then_kill(tmp_path, talker, count=10**6, kill_after_s=2.0)
    numbers = _recovered_numbers(partial)  # play / encode path: open_reader reads the intact prefix
    warning = capsys.readouterr().err
    assert "is damaged" in warning and "intact prefix" in warning and "messages recovered" in warning
    print(f"kill -9 while publishing at {RATE_HZ:.0f} Hz: {len(numbers)} of {published} published recovered")
    assert numbers == list(range(len(numbers)))
    allowance = int(RATE_HZ * (FLUSH_PERIOD_S + 0.15)) + 1  # the open chunk, and messages still in flight
    assert len(numbers) >= published - allowance


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_bag_gives_its_intact_prefix_with_a_warning(tmp_path, storage, capsys):
    frames = write_image_bag(tmp_path / "bag", count=400, storage=storage, extra_string_topic=False)
    storage_file = next(p for p in (tmp_path / "bag").iterdir() if p.suffix in (".mcap", ".db3"))
    size = storage_file.stat().st_size
    with open(storage_file, "r+b") as handle:
        handle.truncate(int(size * 0.75))
    with pytest.raises(Exception):
        Reader(tmp_path / "bag").open()  # before: unreadable, 0 frames
    store = typestore()
    with closing(open_reader(tmp_path / "bag")) as reader:
        data = [bytes(d) for _, _, d in reader.messages()]
    warning = capsys.readouterr().err
    print(f"{storage} cut at 75 %: {len(data)} of {len(frames)} frames read")
    assert f"of the {len(frames)} messages metadata.yaml declares recovered" in warning
    assert 0.6 * len(frames) <= len(data) < len(frames)
    assert data == frames[:len(data)]  # exactly the intact prefix
    report = salvage_to(tmp_path / "bag", tmp_path / "recovered")
    assert report.recovered == len(data) and report.declared == len(frames)
    assert store.deserialize_cdr(data[-1], "sensor_msgs/msg/Image").encoding == "rgb8"


def test_encode_reads_a_truncated_bag(tmp_path, capsys):
    from runtime_helpers import export_seeded

    write_image_bag(tmp_path / "bag", count=60, storage="mcap", extra_string_topic=False)
    storage_file = next((tmp_path / "bag").glob("*.mcap"))
    with open(storage_file, "r+b") as handle:
        handle.truncate(int(storage_file.stat().st_size * 0.7))
    bundle = export_seeded("TinyVAE", "fp32", tmp_path / "bundle")
    summary = encode_bag(tmp_path / "bag", tmp_path / "out", bundle, topic="/camera/image_raw")
    assert 30 <= summary.frames < 60
    assert "intact prefix" in capsys.readouterr().err


def test_recover_cli_and_nothing_to_recover(tmp_path):
    write_image_bag(tmp_path / "bag", count=50, storage="mcap", extra_string_topic=False)
    storage_file = next((tmp_path / "bag").glob("*.mcap"))
    with open(storage_file, "r+b") as handle:
        handle.truncate(int(storage_file.stat().st_size * 0.6))
    process = sage_ros("bag", "recover", tmp_path / "bag", tmp_path / "fixed")
    output = process.communicate(timeout=60)[0]
    assert process.returncode == 0 and "lost" in output, output
    assert Reader(tmp_path / "fixed").open() is None
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.mcap").write_bytes(b"\x89MCAP0\r\n")
    process = sage_ros("bag", "recover", tmp_path / "junk", tmp_path / "nothing")
    output = process.communicate(timeout=60)[0]
    assert process.returncode == 1 and "0 messages recovered" in output, output
    shutil.rmtree(tmp_path / "nothing", ignore_errors=True)
