"""A full disk, a read-only or a vanished output directory under `bag record` and `bag encode`.

Before (9ec98e2): on a 2 MiB tmpfs `bag record` wrote 1.7 MB, hit ENOSPC, printed a traceback, exited 1 and removed
the directory, losing everything it had recorded; a read-only directory or an encode onto a full disk gave a
traceback too. Now it ends no worse than `kill -9`: one line naming the path and errno, exit 1, and the recorder
keeps what it had written in its hidden partial directory, which `sage-ros bag recover` makes a complete bag.
`bag encode` removes its partial output (derived data: the input bag is untouched, the space comes back).
Real faults where this process may mount a tmpfs (root in CI), skipped with the reason elsewhere; plus an
OSError(ENOSPC) raised by a patched writer, which needs no privileges.
"""
import errno
import shutil
import signal
import time
from contextlib import closing

import pytest
import rosbags.rosbag2
import torch
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from bag_helpers import private_node, sage_ros, small_tmpfs, spin_until, write_image_bag
from sage_ros.bag.common import open_reader, typestore
from sage_ros.bag.recover import salvage_to
from sage_ros.cli import main as sage_ros_main
from sage_ros.compression.export import export_bundle
from sage_ros.models import TinyVAE


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    torch.manual_seed(0)
    return export_bundle(TinyVAE(latent_dim=8).eval(), tmp_path_factory.mktemp("faults") / "tiny", name="tiny")


@pytest.fixture
def talker():
    with private_node("bag_fault_talker") as node_and_executor:
        yield node_and_executor


def _one_error_line(output: str, *needles: str) -> str:
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, output
    for needle in needles:
        assert needle in errors[0], output
    return errors[0]


def _record_until_exit(tmp_path, talker, out, topic, payload_bytes=60_000, rate_hz=50.0, timeout=60.0,
                       during=None):
    """Run `sage-ros bag record out` while publishing numbered ~60 kB strings until it exits (or `timeout`);
    `during(published)` is called after each message. Returns (returncode, output, pid, numbers published)."""
    node, executor = talker
    publisher = node.create_publisher(String, topic, QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    recorder = sage_ros("bag", "record", out, "--topics", topic)
    assert spin_until(executor, lambda: publisher.get_subscription_count() > 0, 30), "recorder never subscribed"
    spin_until(executor, lambda: False, 0.5)
    published = 0
    deadline = time.monotonic() + timeout
    while recorder.poll() is None and time.monotonic() < deadline:
        publisher.publish(String(data=f"{published:08d}" + "x" * payload_bytes))
        published += 1
        if during is not None:
            during(published)
        spin_until(executor, lambda: False, 1.0 / rate_hz)
    if recorder.poll() is None:
        recorder.send_signal(signal.SIGINT)
    output = recorder.communicate(timeout=30)[0]
    return recorder.returncode, output, recorder.pid, published


def test_record_on_a_full_disk_keeps_what_was_written_and_says_so_in_one_line(tmp_path, talker):
    with small_tmpfs(tmp_path / "disk", "2m") as disk:
        code, output, pid, published = _record_until_exit(tmp_path, talker, disk / "rec", "/full/chatter")
        line = _one_error_line(output, "ENOSPC", "errno 28", str(disk / "rec"))
        partial = disk / f".rec.partial-{pid}"
        assert code == 1 and published < 2000, output  # it stopped on its own, did not hang
        assert f"kept what was written until then in {partial}" in line and partial.is_dir()
        assert not (disk / "rec").exists()
        report = salvage_to(partial, tmp_path / "recovered")  # recovered off the full disk
    store = typestore()
    with closing(open_reader(tmp_path / "recovered")) as reader:
        numbers = [int(store.deserialize_cdr(d, c.msgtype).data[:8]) for c, _, d in reader.messages()]
    print(line)
    print(f"full 2 MiB disk: {published} published, {len(numbers)} recovered ({report.bytes_read} bytes read)")
    assert report.recovered == len(numbers) >= 10  # ~30 messages of 60 kB fit; at least a chunk's worth kept
    assert numbers == list(range(len(numbers)))


def test_record_into_a_read_only_directory_is_one_line(tmp_path, talker):
    with small_tmpfs(tmp_path / "ro", "1m", read_only=True) as disk:
        recorder = sage_ros("bag", "record", disk / "rec", "--topics", "/ro/chatter")
        output = recorder.communicate(timeout=60)[0]
        assert recorder.returncode == 1, output
        _one_error_line(output, "EROFS", str(disk / "rec"), "nothing written")


def test_record_stops_when_its_directory_vanishes(tmp_path, talker):
    parent = tmp_path / "sub"
    parent.mkdir()
    removed = []

    def remove_after_ten(published):
        if published == 10 and not removed:
            shutil.rmtree(parent)
            removed.append(published)

    code, output, _, published = _record_until_exit(tmp_path, talker, parent / "rec", "/gone/chatter",
                                                    payload_bytes=100, rate_hz=20.0, timeout=30.0,
                                                    during=remove_after_ten)
    assert removed and code == 1, output
    _one_error_line(output, "ENOENT", "vanished")
    assert published < 20 * 25, output  # stopped by itself within seconds, not at the 30 s timeout


def test_encode_onto_a_full_disk_is_one_line_and_removes_its_partial_output(bundle, tmp_path, capsys,
                                                                            monkeypatch):
    write_image_bag(tmp_path / "in", count=20)
    calls = []
    real_write = rosbags.rosbag2.Writer.write

    def write_until_full(self, connection, timestamp, data):
        calls.append(timestamp)
        if len(calls) > 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, connection, timestamp, data)

    monkeypatch.setattr(rosbags.rosbag2.Writer, "write", write_until_full)
    code = sage_ros_main(["bag", "encode", str(tmp_path / "in"), str(tmp_path / "out"), "--bundle", str(bundle),
                          "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    _one_error_line(err, "ENOSPC", "errno 28", str(tmp_path / "out"), "partial output was removed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_encode_onto_a_real_full_disk_and_into_a_read_only_one(bundle, tmp_path, capsys):
    write_image_bag(tmp_path / "in", count=600, extra_string_topic=False)
    with small_tmpfs(tmp_path / "disk", "32k") as disk:
        code = sage_ros_main(["bag", "encode", str(tmp_path / "in"), str(disk / "out"), "--bundle", str(bundle),
                              "--no-progress"])
        err = capsys.readouterr().err
        assert code == 1
        _one_error_line(err, "ENOSPC", str(disk / "out"))
        assert list(disk.iterdir()) == []  # the space is given back
    with small_tmpfs(tmp_path / "ro", "1m", read_only=True) as disk:
        code = sage_ros_main(["bag", "encode", str(tmp_path / "in"), str(disk / "out"), "--bundle", str(bundle),
                              "--no-progress"])
        assert code == 1
        _one_error_line(capsys.readouterr().err, "EROFS", str(disk / "out"))
