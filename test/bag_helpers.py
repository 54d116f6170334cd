"""Small rosbag2 bags for the bag tests, written with rosbags (sqlite3 or mcap), and a live-topic helper node."""
from __future__ import annotations

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
