"""Image topics of rosbag2 bags (sqlite3 or mcap) -> uint8 RGB frames, so a robot's own recordings can train
and evaluate models. Reads with `rosbags` (imported lazily: the rest of sage_ros.data works without it) and
converts with the runtime's codec (sage_ros.runtime.image_codec), the very code the encoder nodes run.

sensor_msgs/Image in any encoding image_codec knows (rgb8, bgr8, mono8, mono16, yuv422, ...) and
sensor_msgs/CompressedImage (jpeg, png). A JPEG is decoded at 1/2, 1/4 or 1/8 scale when `size` says the
model needs far fewer pixels (libjpeg IDCT scaling, as the nodes do).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from sage_ros.data.errors import DataError
from sage_ros.data.resize import fit_to_size
from sage_ros.runtime.image_codec import ImageConversionError, decode_compressed, image_msg_to_rgb8

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


def _open(bag):
    from rosbags.rosbag2 import Reader

    path = Path(bag)
    if not path.exists():
        raise DataError(f"bag not found: {path}")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # rosbags raises several types for unreadable bags; report one
        raise DataError(f"cannot open bag {path}: {exc}") from exc
    return reader


def _typestore():
    from rosbags.typesys import Stores, get_typestore

    # sensor_msgs/Image and CompressedImage are the same in Humble, Jazzy and Kilted.
    return get_typestore(Stores.LATEST)


def list_image_topics(bag) -> dict[str, str]:
    """{topic: message type} of the bag's Image / CompressedImage topics."""
    reader = _open(bag)
    try:
        return {c.topic: c.msgtype for c in reader.connections if c.msgtype in IMAGE_TYPES}
    finally:
        reader.close()


def iter_bag_images(bag, topic: str, *, min_size: int | None = None, stride: int = 1,
                    max_frames: int | None = None, skip_bad: bool = False) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (header stamp in ns, uint8 H x W x 3 RGB frame) for every `stride`-th message of `topic`.

    min_size: JPEGs may be decoded at reduced resolution as long as both sides stay >= min_size.
    skip_bad: skip messages that cannot be converted instead of raising DataError.
    """
    if stride < 1:
        raise DataError(f"stride must be >= 1, got {stride}")
    reader = _open(bag)
    try:
        connections = [c for c in reader.connections if c.topic == topic]
        if not connections:
            images = sorted(c.topic for c in reader.connections if c.msgtype in IMAGE_TYPES)
            raise DataError(f"topic {topic!r} not in bag {bag}; image topics: {images}")
        msgtype = connections[0].msgtype
        if msgtype not in IMAGE_TYPES:
            raise DataError(f"topic {topic!r} carries {msgtype}, not one of {IMAGE_TYPES}")
        typestore, compressed = _typestore(), msgtype.endswith("CompressedImage")
        produced = 0
        for index, (_, _, rawdata) in enumerate(reader.messages(connections=connections)):
            if index % stride:
                continue
            try:
                msg = typestore.deserialize_cdr(rawdata, msgtype)
                frame = decode_compressed(msg, min_size) if compressed else image_msg_to_rgb8(msg)
            except (ImageConversionError, ValueError, AssertionError, IndexError, KeyError) as exc:
                if skip_bad:
                    continue
                raise DataError(f"{bag} {topic} message {index}: {exc}") from exc
            stamp = msg.header.stamp
            yield stamp.sec * 10**9 + stamp.nanosec, frame
            produced += 1
            if max_frames is not None and produced >= max_frames:
                return
    finally:
        reader.close()


def load_bag_images(bag, topic: str, size: int | None = None, *, mode: str = "resize", stride: int = 1,
                    max_frames: int | None = None, skip_bad: bool = False,
                    return_stamps: bool = False):
    """Frames of an image topic as one uint8 array: N x size x size x 3 RGB (resized like the encoder nodes,
    mode "resize" | "center" | "letterbox"), or N x H x W x 3 at native size when size is None.
    With return_stamps, returns (frames, int64 header stamps in ns)."""
    frames, stamps = [], []
    for stamp, frame in iter_bag_images(bag, topic, min_size=size, stride=stride, max_frames=max_frames,
                                        skip_bad=skip_bad):
        if size is not None:
            frame = fit_to_size(frame, size, mode)
        elif frames and frame.shape != frames[0].shape:
            raise DataError(f"{topic}: frame size changed ({frames[0].shape} -> {frame.shape}); pass size=")
        frames.append(frame)
        stamps.append(stamp)
    if not frames:
        raise DataError(f"no frames on {topic} in {bag}")
    images = np.stack(frames)
    return (images, np.asarray(stamps, dtype=np.int64)) if return_stamps else images
