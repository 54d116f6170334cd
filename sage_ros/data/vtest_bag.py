"""Stage C of `make data`: a real-camera rosbag2 made from OpenCV's vtest.avi (768x576 at 10 fps, 79.5 s).

data_cache/bags/vtest/ (mcap, rosbag2's default storage since Iron):
  /camera/image_raw             sensor_msgs/Image rgb8, native 768x576, step = width * 3, the first 20 s
  /camera/image_raw/compressed  sensor_msgs/CompressedImage, format "jpeg", every frame of the video
header.stamp = VTEST_START_NS + i * 100 ms, frame_id "camera_optical_frame", message log time = stamp.
data_cache/bags/vtest_sqlite3/ is the same recording cut to its first few seconds in sqlite3 storage, so
readers of older bags are tested too. Message definitions come from rosbags' ROS 2 Jazzy typestore
(sensor_msgs/Image, CompressedImage and std_msgs/Header are identical in Humble, Jazzy and Kilted).
rosbags is imported inside the functions: stage B and the loaders must run where it is not installed.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from sage_ros.atomic import atomic_write_json
from sage_ros.data.errors import DataError

VTEST_START_NS = 1_700_000_000_000_000_000  # a fixed, plausible wall-clock start (2023-11-14 22:13:20 UTC)
FRAME_PERIOD_NS = 100_000_000                # 10 fps
FRAME_ID = "camera_optical_frame"
RAW_TOPIC = "/camera/image_raw"
COMPRESSED_TOPIC = "/camera/image_raw/compressed"
RAW_SECONDS = 20
JPEG_QUALITY = 90
SQLITE_RAW_FRAMES = 10        # the small sqlite3 variant: 1 s raw + 5 s jpeg
SQLITE_COMPRESSED_FRAMES = 50
BAG_VERSION = 1


def _messages(typestore, rgb: np.ndarray, index: int):
    """(raw Image, CompressedImage) for frame `index` of the video, stamped at start + index * 100 ms."""
    types = typestore.types
    stamp_ns = VTEST_START_NS + index * FRAME_PERIOD_NS
    header = types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9),
        frame_id=FRAME_ID)
    height, width = rgb.shape[:2]
    raw = types["sensor_msgs/msg/Image"](header=header, height=height, width=width, encoding="rgb8",
                                          is_bigendian=0, step=width * 3, data=rgb.reshape(-1))
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise DataError(f"JPEG encoding failed for frame {index}")
    compressed = types["sensor_msgs/msg/CompressedImage"](header=header, format="jpeg", data=jpeg.reshape(-1))
    return stamp_ns, raw, compressed


def _write_bag(video: Path, dest: Path, storage: str, raw_frames: int, compressed_frames: int | None) -> dict:
    """Write one bag directory at `dest` (atomically: into a temp dir beside it, then renamed)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.ROS2_JAZZY)
    image_type, compressed_type = "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"
    tmp_parent = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    tmp = tmp_parent / dest.name
    counts = {RAW_TOPIC: 0, COMPRESSED_TOPIC: 0}
    try:
        writer = Writer(tmp, version=9, storage_plugin=StoragePlugin[storage.upper()])
        with writer:
            raw_conn = writer.add_connection(RAW_TOPIC, image_type, typestore=typestore)
            jpeg_conn = writer.add_connection(COMPRESSED_TOPIC, compressed_type, typestore=typestore)
            capture = cv2.VideoCapture(str(video))
            index = 0
            while compressed_frames is None or index < max(raw_frames, compressed_frames):
                ok, bgr = capture.read()
                if not ok:
                    break
                stamp_ns, raw, compressed = _messages(typestore, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), index)
                if index < raw_frames:
                    writer.write(raw_conn, stamp_ns, typestore.serialize_cdr(raw, image_type))
                    counts[RAW_TOPIC] += 1
                if compressed_frames is None or index < compressed_frames:
                    writer.write(jpeg_conn, stamp_ns, typestore.serialize_cdr(compressed, compressed_type))
                    counts[COMPRESSED_TOPIC] += 1
                index += 1
            capture.release()
        if counts[RAW_TOPIC] == 0:
            raise DataError(f"no frames decoded from {video}")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp_parent, ignore_errors=True)
    size = sum(p.stat().st_size for p in dest.iterdir())
    return {"path": dest.name, "storage": storage, "messages": counts, "bytes": size}


def write_vtest_bags(video: Path, bags: Path, video_sha256: str, sqlite: bool = True, log=print) -> dict:
    """Stage C: bags/vtest (mcap) and, if `sqlite`, bags/vtest_sqlite3; bags/vtest.json is written last."""
    bags.mkdir(parents=True, exist_ok=True)
    (bags / "vtest.json").unlink(missing_ok=True)
    start = time.perf_counter()
    info = {"version": BAG_VERSION, "video_sha256": video_sha256, "start_ns": VTEST_START_NS,
            "frame_period_ns": FRAME_PERIOD_NS, "frame_id": FRAME_ID,
            "topics": {RAW_TOPIC: "sensor_msgs/msg/Image", COMPRESSED_TOPIC: "sensor_msgs/msg/CompressedImage"},
            "bags": [_write_bag(video, bags / "vtest", "mcap", RAW_SECONDS * 10, None)]}
    if sqlite:
        info["bags"].append(_write_bag(video, bags / "vtest_sqlite3", "sqlite3", SQLITE_RAW_FRAMES,
                                       SQLITE_COMPRESSED_FRAMES))
    info["seconds"] = round(time.perf_counter() - start, 2)
    atomic_write_json(bags / "vtest.json", info)
    for bag in info["bags"]:
        log(f"  bag: {bag['path']} ({bag['storage']}): {bag['messages']}, {bag['bytes'] / 1e6:.0f} MB")
    log(f"  bags written in {info['seconds']:.1f} s")
    return info


def bags_complete(bags: Path, video_sha256: str) -> bool:
    try:
        info = json.loads((bags / "vtest.json").read_text())
    except (OSError, ValueError):
        return False
    return (info.get("version") == BAG_VERSION and info.get("video_sha256") == video_sha256
            and all((bags / b["path"] / "metadata.yaml").is_file() for b in info["bags"]))
