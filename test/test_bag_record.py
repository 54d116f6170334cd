"""`sage-ros bag record` over real DDS: publishers in this process, the recorder as its own process."""
import signal
from contextlib import closing

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from mcap_ros2.reader import read_ros2_messages
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image

from bag_helpers import private_node, sage_ros, spin_until, write_image_bag
from sage_ros.bag.common import open_reader, typestore


@pytest.fixture
def talker():
    with private_node("bag_record_talker") as node_and_executor:
        yield node_and_executor


def latent_msg(index: int, dim=8) -> Image:
    """A 32FC1 2xL latent message as the encoder publishes it (row 0 mu, row 1 logvar)."""
    msg = Image(height=2, width=dim, encoding="32FC1", step=4 * dim)
    msg.header.frame_id = "camera_optical_frame"
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1000 + index, 7
    msg.data = np.full((2, dim), index, np.float32).tobytes()
    return msg


def wait_matched(executor, publishers, timeout=15.0):
    assert spin_until(executor, lambda: all(p.get_subscription_count() >= 1 for p in publishers), timeout)


def test_record_latents_reliable_and_diagnostics_best_effort_until_sigint(tmp_path, talker):
    node, executor = talker
    out = tmp_path / "rec"
    recorder = sage_ros("bag", "record", out, "--topics", "/cam/latent", "/diagnostics")
    latent_pub = node.create_publisher(Image, "/cam/latent", QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
    diag_pub = node.create_publisher(DiagnosticArray, "/diagnostics", qos_profile_sensor_data)
    wait_matched(executor, [latent_pub, diag_pub])
    sent = [latent_msg(i) for i in range(30)]
    for msg in sent:
        latent_pub.publish(msg)
    diag_pub.publish(DiagnosticArray(status=[DiagnosticStatus(name="encoder", message="ok")]))
    assert latent_pub.wait_for_all_acked(rclpy.duration.Duration(seconds=5))
    executor.spin_once(timeout_sec=0.3)
    assert not out.exists()  # the bag only appears once closed complete
    recorder.send_signal(signal.SIGINT)
    output = recorder.communicate(timeout=20)[0]
    assert recorder.returncode == 0, output
    assert "stopped by signal" in output and "/cam/latent [sensor_msgs/msg/Image, reliable]: 30" in output, output
    assert "/diagnostics [diagnostic_msgs/msg/DiagnosticArray, best_effort]" in output, output

    reader = open_reader(out)  # rosbags: every reliable latent, in order, content exact
    latent_conn = next(c for c in reader.connections if c.topic == "/cam/latent")
    store = typestore()  # compare decoded messages: CDR padding bytes are not defined, so raw bytes may differ
    recorded = [store.deserialize_cdr(d, latent_conn.msgtype) for _, _, d in reader.messages([latent_conn])]
    expected = [store.deserialize_cdr(serialize_message(m), latent_conn.msgtype) for m in sent]
    assert [(m.header.stamp.sec, m.header.frame_id, m.encoding, m.data.tobytes()) for m in recorded] == \
        [(m.header.stamp.sec, m.header.frame_id, m.encoding, m.data.tobytes()) for m in expected]
    assert latent_conn.ext.offered_qos_profiles[0].reliability.name == "RELIABLE"
    reader.close()
    mcap_file = next(out.glob("*.mcap"))  # an independent reader: the bag is self-describing
    decoded = [m.ros_msg for m in read_ros2_messages(mcap_file, topics=["/cam/latent"])]
    assert [m.header.stamp.sec for m in decoded] == list(range(1000, 1030))
    assert np.frombuffer(bytes(decoded[-1].data), np.float32).tolist() == [29.0] * 16


def test_record_stops_on_max_messages_and_on_sigterm_with_a_closed_bag(tmp_path, talker):
    node, executor = talker
    publisher = node.create_publisher(Image, "/cam/latent", QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
    limited = sage_ros("bag", "record", tmp_path / "limited", "--topics", "/cam/latent", "--max-messages", "5")
    endless = sage_ros("bag", "record", tmp_path / "endless", "--topics", "/cam/latent")
    assert spin_until(executor, lambda: publisher.get_subscription_count() >= 2, 15.0)
    for i in range(12):
        publisher.publish(latent_msg(i))
    assert publisher.wait_for_all_acked(rclpy.duration.Duration(seconds=5))
    output = limited.communicate(timeout=20)[0]
    assert limited.returncode == 0 and "stopped by max-messages" in output, output
    endless.send_signal(signal.SIGTERM)
    assert endless.communicate(timeout=20)[0] and endless.returncode == 0
    store = typestore()
    for name, count in (("limited", 5), ("endless", 12)):
        with closing(open_reader(tmp_path / name)) as reader:
            msgs = [store.deserialize_cdr(d, c.msgtype) for c, _, d in reader.messages()]
        assert [m.header.stamp.sec for m in msgs] == list(range(1000, 1000 + count)), name


def test_play_into_record_round_trip_keeps_every_frame_and_stamp(tmp_path):
    frames = write_image_bag(tmp_path / "in", count=20, fps=20.0)
    recorder = sage_ros("bag", "record", tmp_path / "out", "--topics", "/camera/image_raw", "--max-messages", "20")
    player = sage_ros("bag", "play", tmp_path / "in", "--qos", "reliable", "--topics", "/camera/image_raw",
                      "--wait-for-subscribers", "1", "--wait-timeout", "20")
    assert player.communicate(timeout=30)[0] and player.returncode == 0
    output = recorder.communicate(timeout=20)[0]
    assert recorder.returncode == 0, output
    with closing(open_reader(tmp_path / "out")) as reader:
        assert [bytes(d) for _, _, d in reader.messages()] == frames


def test_record_refuses_to_overwrite(tmp_path):
    (tmp_path / "exists").mkdir()
    recorder = sage_ros("bag", "record", tmp_path / "exists", "--topics", "/x", "--duration", "0.1")
    output = recorder.communicate(timeout=20)[0]
    assert recorder.returncode == 1 and "exists already" in output, output
