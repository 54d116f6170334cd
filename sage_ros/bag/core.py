"""The bag package's leaf: its error type, the type store, the QoS record and the atomic bag writer.

It imports no other sage_ros.bag module, so every bag module may import it (`recover` and `common` both do) and no
import goes in a circle. No rclpy here.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

# Version 9 is what rosbag2 writes since Jazzy; Humble's rosbag2 reads it too (mcap storage).
BAG_VERSION = 9


class BagError(ValueError):
    """Any bad bag input or bag option: missing bag, unknown topic, unknown message type, bad remap."""


def typestore():
    """Message definitions of the ROS release whose wheels we run (Kilted), for (de)serialising and msgdefs."""
    return get_typestore(Stores.ROS2_KILTED)


def bag_qos(reliable: bool, depth: int, transient_local: bool = False) -> Qos:
    """A rosbags Qos record (stored in the bag's metadata as the offered QoS, like rosbag2 does)."""
    forever = QosTime(sec=2147483647, nsec=4294967295)  # rmw's "infinite" duration as rosbag2 stores it
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=depth,
        reliability=QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
        durability=QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE,
        deadline=forever,
        lifespan=forever,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=forever,
        avoid_ros_namespace_conventions=False,
    )


@contextlib.contextmanager
def atomic_bag_writer(out: str | os.PathLike) -> Iterator[Writer]:
    """Yield an open mcap Writer whose bag appears at `out` only once it is closed complete.

    rosbags writes a directory (metadata.yaml is written on close), so sage_ros.atomic's single-file rename
    does not apply; the same idea for a directory: write `<parent>/.<name>.partial-<pid>/<name>/`, then rename
    the finished inner directory onto `out`. A crash leaves only the hidden partial directory, never a bag
    that looks whole.
    """
    out = Path(out)
    if out.exists():
        raise BagError(f"{out} exists already; not overwriting a bag")
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    writer = Writer(staging / out.name, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
    try:
        writer.open()
        try:
            yield writer
        except BaseException:
            writer.abort()
            raise
        writer.close()
        os.replace(staging / out.name, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
