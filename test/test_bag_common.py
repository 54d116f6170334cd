"""Bag helpers without DDS: remaps, QoS conversion, reader errors, atomic bag output."""
import pytest
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

from bag_helpers import write_image_bag
from sage_ros.bag.common import (BagError, atomic_bag_writer, bag_qos, open_reader, parse_remaps, select_connections,
                                 typestore)
from sage_ros.bag.live import message_class, parse_qos_overrides, qos_from_bag


def test_remaps_and_qos_overrides_parse_or_fail_clearly():
    assert parse_remaps(["/a:=/b", "c:=/d/e"]) == {"/a": "/b", "c": "/d/e"}
    for bad in (["/a"], [":=/b"], ["/a:="]):
        with pytest.raises(BagError, match="bad remap"):
            parse_remaps(bad)
    assert parse_qos_overrides(["/x=reliable"]) == {"/x": "reliable"}
    with pytest.raises(BagError, match="bad --qos"):
        parse_qos_overrides(["/x=fast"])


def test_recorded_qos_round_trips_into_rclpy():
    qos = qos_from_bag(bag_qos(reliable=True, depth=7, transient_local=True))
    assert (qos.reliability, qos.durability, qos.depth) == (ReliabilityPolicy.RELIABLE, DurabilityPolicy.TRANSIENT_LOCAL, 7)
    assert qos_from_bag(bag_qos(reliable=False, depth=1)).reliability == ReliabilityPolicy.BEST_EFFORT


def test_reader_errors_and_message_classes(tmp_path):
    with pytest.raises(BagError, match="bag not found"):
        open_reader(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="cannot open bag"):
        open_reader(tmp_path / "empty")
    write_image_bag(tmp_path / "bag", count=2)
    reader = open_reader(tmp_path / "bag")
    assert [c.topic for c in select_connections(reader, ["/chatter"])] == ["/chatter"]
    reader.close()
    assert message_class("sensor_msgs/msg/Image").__name__ == "Image"
    with pytest.raises(BagError, match="not installed"):
        message_class("no_such_msgs/msg/Thing")


def test_a_failed_write_leaves_no_bag_and_no_partial_directory(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_bag_writer(tmp_path / "out") as writer:
            writer.add_connection("/x", "std_msgs/msg/String", typestore=typestore())
            raise RuntimeError("crash mid-recording")
    assert list(tmp_path.iterdir()) == []
    with atomic_bag_writer(tmp_path / "ok"):
        assert not (tmp_path / "ok").exists()  # only visible once closed
    assert (tmp_path / "ok" / "metadata.yaml").is_file() and len(list(tmp_path.iterdir())) == 1
