"""Small rosbag2 bags for the bag tests, written with rosbags (sqlite3 or mcap), and a live-topic helper node."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer

from sage_ros.bag.common import typestore

REPO = Path(__file__).resolve().parents[1]
BAG_T0_NS = 1_700_000_000_000_000_000  # recorded receive time of the first message
STAMP_T0_NS = 1_600_000_000_000_000_000  # header stamps differ from receive times, as on a real robot


def image_msg(store, index: int, height=4, width=6):
    """An rgb8 frame whose pixels and header encode `index` (so order and content can be checked)."""
    Image, Header, Time = (store.types[t] for t in ("sensor_msgs/msg/Image", "std_msgs/msg/Header", "builtin_interfaces/msg/Time"))
    sec, nsec = divmod(STAMP_T0_NS + index * 50_000_000, 1_000_000_000)
    pixels = np.full((height, width, 3), index % 256, np.uint8)
    return Image(header=Header(stamp=Time(sec=sec, nanosec=nsec), frame_id="camera_optical_frame"), height=height,
                 width=width, encoding="rgb8", is_bigendian=0, step=width * 3, data=pixels.reshape(-1))


def write_image_bag(path, count=10, fps=10.0, storage="mcap", extra_string_topic=True) -> list[bytes]:
    """Bag with `count` frames on /camera/image_raw at `fps` (+ /chatter strings); returns the frames' CDR bytes."""
    store = typestore()
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    frames = []
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        images = writer.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=store)
        chatter = writer.add_connection("/chatter", "std_msgs/msg/String", typestore=store) if extra_string_topic else None
        for i in range(count):
            data = store.serialize_cdr(image_msg(store, i), "sensor_msgs/msg/Image")
            frames.append(bytes(data))
            writer.write(images, BAG_T0_NS + int(i * 1e9 / fps), data)
            if chatter is not None:
                text = store.types["std_msgs/msg/String"](data=f"hello {i}")
                writer.write(chatter, BAG_T0_NS + int(i * 1e9 / fps) + 1000, store.serialize_cdr(text, "std_msgs/msg/String"))
    return frames


def sage_ros(*args, **popen_kwargs) -> subprocess.Popen:
    """Start `sage-ros ARGS` as its own process (its own DDS participant), output captured as text."""
    return subprocess.Popen([sys.executable, "-m", "sage_ros.cli", *map(str, args)], cwd=REPO, env=os.environ.copy(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen_kwargs)


def spin_until(executor, predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        executor.spin_once(timeout_sec=0.02)
    return True


def camera_frames(count: int, height=48, width=64, seed=0) -> np.ndarray:
    """Smooth, distinct uint8 RGB frames (gradients + a moving square): realistic enough for JPEG and resizing."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    frames = []
    for i in range(count):
        base = np.stack([(x * 4 + i * 9) % 256, (y * 5 + i * 3) % 256, ((x + y) * 2 + i * 17) % 256], -1)
        top, left = (i * 3) % (height - 8), (i * 5) % (width - 8)
        base[top:top + 8, left:left + 8] = rng.integers(0, 256, 3)
        frames.append(base.astype(np.uint8))
    return np.stack(frames)


def write_camera_bag(path, frames: np.ndarray, fps=10.0, storage="mcap") -> list[int]:
    """Bag with /camera/image_raw (rgb8) and /camera/image_raw/compressed (jpeg) of the same frames; returns
    the header stamps (ns) of the frames."""
    import cv2

    store = typestore()
    T = store.types
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    stamps = []
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        raw = writer.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=store)
        jpeg = writer.add_connection("/camera/image_raw/compressed", "sensor_msgs/msg/CompressedImage", typestore=store)
        for i, frame in enumerate(frames):
            stamp = STAMP_T0_NS + int(i * 1e9 / fps)
            stamps.append(stamp)
            header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](*divmod(stamp, 1_000_000_000)),
                                              frame_id="camera_optical_frame")
            height, width = frame.shape[:2]
            image = T["sensor_msgs/msg/Image"](header=header, height=height, width=width, encoding="rgb8", is_bigendian=0,
                                               step=width * 3, data=frame.reshape(-1))
            ok, encoded = cv2.imencode(".jpg", frame[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
            compressed = T["sensor_msgs/msg/CompressedImage"](header=header, format="jpeg", data=encoded.reshape(-1))
            writer.write(raw, BAG_T0_NS + int(i * 1e9 / fps), store.serialize_cdr(image, "sensor_msgs/msg/Image"))
            writer.write(jpeg, BAG_T0_NS + int(i * 1e9 / fps) + 1, store.serialize_cdr(compressed, "sensor_msgs/msg/CompressedImage"))
    return stamps


@contextlib.contextmanager
def private_node(name: str):
    """(node, executor) in a context of their own, shut down on exit: the talkers and listeners of the bag tests."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.context.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(name, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        yield node, executor
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str = "2m", read_only: bool = False):
    """A tmpfs of `size` mounted at `where` (a full disk or a read-only filesystem for real), unmounted after;
    pytest.skip with the reason where this process may not mount (not root, no CAP_SYS_ADMIN, no mount(8))."""
    import pytest

    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    try:
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True,
                                text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip() or result.returncode}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)
