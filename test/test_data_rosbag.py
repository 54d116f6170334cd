"""rosbag2 image-topic loader: the bundled real-camera vtest bags (mcap + sqlite3) and bags written here."""
import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from sage_ros.data import DataError, data_root, vtest_bag_path
from sage_ros.data.rosbag import iter_bag_images, list_image_topics, load_bag_images

RAW, JPEG = "/camera/image_raw", "/camera/image_raw/compressed"
TS = get_typestore(Stores.ROS2_HUMBLE)


def vtest_frames(count):
    capture = cv2.VideoCapture(str(data_root() / "sources" / "opencv-doc" / "vtest.avi"))
    frames = [cv2.cvtColor(capture.read()[1], cv2.COLOR_BGR2RGB) for _ in range(count)]
    capture.release()
    return frames


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bundled_raw_topic_is_the_real_video_bit_exact(storage):
    bag = vtest_bag_path(storage=storage)
    assert list_image_topics(bag) == {RAW: "sensor_msgs/msg/Image", JPEG: "sensor_msgs/msg/CompressedImage"}
    frames, stamps = load_bag_images(bag, RAW, max_frames=5, return_stamps=True)
    assert frames.shape == (5, 576, 768, 3)
    np.testing.assert_array_equal(frames, np.stack(vtest_frames(5)))
    assert np.diff(stamps).tolist() == [100_000_000] * 4  # 10 fps header stamps


def test_bundled_bag_headers_counts_and_log_times():
    from rosbags.rosbag2 import Reader

    with Reader(vtest_bag_path()) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        assert counts == {RAW: 200, JPEG: 795}  # 20 s raw, the whole 79.5 s video as jpeg
        conns = [c for c in reader.connections if c.topic == JPEG]
        for i, (conn, log_time, raw) in enumerate(reader.messages(connections=conns)):
            msg = TS.deserialize_cdr(raw, conn.msgtype)
            assert msg.header.frame_id == "camera_optical_frame" and msg.format == "jpeg"
            assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == log_time
            if i == 3:
                break


def test_bundled_jpeg_topic_matches_raw_and_reduces_resolution():
    raw = load_bag_images(vtest_bag_path(), RAW, max_frames=3)
    jpeg = load_bag_images(vtest_bag_path(), JPEG, max_frames=3)
    mse = np.mean((raw.astype(float) - jpeg) ** 2)
    assert 10 * np.log10(255**2 / mse) > 30  # same frames, jpeg quality 90
    # size=64 may decode at 1/8 (96 x 72 >= 64) and resize: close to resizing the full frame
    small = load_bag_images(vtest_bag_path(), JPEG, 64, max_frames=3)
    full = np.stack([cv2.resize(f, (64, 64), interpolation=cv2.INTER_AREA) for f in raw])
    assert small.shape == (3, 64, 64, 3) and np.abs(small.astype(int) - full).mean() < 6


def test_stride_and_max_frames():
    stamps = [s for s, _ in iter_bag_images(vtest_bag_path(), JPEG, min_size=32, stride=100)]
    assert len(stamps) == 8 and np.diff(stamps).tolist() == [10 * 10**9] * 7


def write_bag(path, storage, frames):
    """A bag like a robot's: bgr8 with row padding, mono8, png and jpeg CompressedImage, plus a non-image topic."""
    types = TS.types
    with Writer(path, version=9, storage_plugin=StoragePlugin[storage.upper()]) as writer:
        conns = {t: writer.add_connection(t, m, typestore=TS) for t, m in [
            ("/bgr", "sensor_msgs/msg/Image"), ("/mono", "sensor_msgs/msg/Image"),
            ("/png", "sensor_msgs/msg/CompressedImage"), ("/jpeg", "sensor_msgs/msg/CompressedImage"),
            ("/chatter", "std_msgs/msg/String"), ("/broken", "sensor_msgs/msg/Image")]}
        for i, rgb in enumerate(frames):
            stamp = 1_000_000_000 + i * 50_000_000
            header = types["std_msgs/msg/Header"](
                stamp=types["builtin_interfaces/msg/Time"](sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id="cam")
            h, w = rgb.shape[:2]
            padded = np.zeros((h, w * 3 + 8), np.uint8)  # step > width * 3: 8 bytes of padding per row
            padded[:, : w * 3] = rgb[..., ::-1].reshape(h, w * 3)
            image = types["sensor_msgs/msg/Image"]
            messages = {
                "/bgr": image(header=header, height=h, width=w, encoding="bgr8", is_bigendian=0, step=w * 3 + 8,
                              data=padded.reshape(-1)),
                "/mono": image(header=header, height=h, width=w, encoding="mono8", is_bigendian=0, step=w,
                               data=np.ascontiguousarray(rgb[..., 1]).reshape(-1)),
                "/png": types["sensor_msgs/msg/CompressedImage"](
                    header=header, format="png", data=cv2.imencode(".png", rgb[..., ::-1])[1].reshape(-1)),
                "/jpeg": types["sensor_msgs/msg/CompressedImage"](
                    header=header, format="jpeg", data=cv2.imencode(".jpg", rgb[..., ::-1])[1].reshape(-1)),
                "/chatter": types["std_msgs/msg/String"](data="hello"),
                "/broken": image(header=header, height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3,
                                 data=rgb.reshape(-1)[: -1 if i == 1 else None]),  # frame 1 is one byte short
            }
            for topic, msg in messages.items():
                writer.write(conns[topic], stamp, TS.serialize_cdr(msg, conns[topic].msgtype))


@pytest.fixture(params=["sqlite3", "mcap"])
def robot_bag(request, tmp_path):
    frames = [cv2.resize(f, (160, 120), interpolation=cv2.INTER_AREA) for f in vtest_frames(4)]
    write_bag(tmp_path / "bag", request.param, frames)
    return tmp_path / "bag", np.stack(frames)


def test_own_bag_every_encoding_round_trips(robot_bag):
    bag, frames = robot_bag
    assert set(list_image_topics(bag)) == {"/bgr", "/mono", "/png", "/jpeg", "/broken"}
    np.testing.assert_array_equal(load_bag_images(bag, "/bgr"), frames)  # padding skipped, BGR -> RGB
    np.testing.assert_array_equal(load_bag_images(bag, "/png"), frames)
    mono = load_bag_images(bag, "/mono")
    np.testing.assert_array_equal(mono[..., 0], frames[..., 1])
    assert np.abs(load_bag_images(bag, "/jpeg").astype(int) - frames).mean() < 4
    images, stamps = load_bag_images(bag, "/bgr", 32, mode="center", return_stamps=True)
    assert images.shape == (4, 32, 32, 3) and stamps.tolist() == [10**9 + i * 50_000_000 for i in range(4)]


def test_own_bag_bad_input_raises_data_error(robot_bag, tmp_path):
    bag, _ = robot_bag
    with pytest.raises(DataError, match="message 1"):
        load_bag_images(bag, "/broken")
    assert len(load_bag_images(bag, "/broken", skip_bad=True)) == 3
    with pytest.raises(DataError, match="/bgr"):  # unknown topic: the error lists the image topics
        load_bag_images(bag, "/camera/missing")
    with pytest.raises(DataError, match="not one of"):
        load_bag_images(bag, "/chatter")
    with pytest.raises(DataError):
        load_bag_images(tmp_path / "no_such_bag", "/bgr")
    with pytest.raises(DataError):
        load_bag_images(bag, "/bgr", stride=0)
