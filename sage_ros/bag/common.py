"""Bag helpers shared by play / record / encode: opening, type store, QoS conversion, atomic bag output.

No rclpy here, so `bag encode` runs on a machine without ROS.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

# Version 9 is what rosbag2 writes since Jazzy; Humble's rosbag2 reads it too (mcap storage).
BAG_VERSION = 9


class BagError(ValueError):
    """Any bad bag input or bag option: missing bag, unknown topic, unknown message type, bad remap."""


def typestore():
    """Message definitions of the ROS release whose wheels we run (Kilted), for (de)serialising and msgdefs."""
    return get_typestore(Stores.ROS2_KILTED)


def open_reader(path: str | os.PathLike) -> Reader:
    """An opened rosbags Reader for a rosbag2 directory (sqlite3 or mcap) or a bare .mcap / .db3 file."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"bag not found: {path}")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # rosbags raises several types (ReaderError, KeyError on odd metadata)
        return _open_intact_prefix(path, exc)
    return reader


def _open_intact_prefix(path: Path, error: Exception) -> Reader:
    """A bag that does not open (truncated, killed while recording, no metadata.yaml): recover its intact prefix
    into a temporary bag (bag.recover) and read that, with a warning saying how much was lost."""
    import sys
    import tempfile
    import weakref

    from sage_ros.bag.recover import salvage_to

    workdir = Path(tempfile.mkdtemp(prefix="sage_ros_salvage_"))
    try:
        report = salvage_to(path, workdir / "recovered")
        if not report.recovered:
            raise BagError(f"cannot open bag {path}: {error}; and no intact message could be recovered "
                           f"({report.stopped_by or 'empty'})")
        reader = Reader(workdir / "recovered")
        reader.open()
    except BaseException as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        if isinstance(exc, BagError) and str(exc).startswith("cannot open bag"):
            raise
        if isinstance(exc, Exception):
            raise BagError(f"cannot open bag {path}: {error} (recovery failed too: {exc})") from exc
        raise
    weakref.finalize(reader, shutil.rmtree, workdir, True)
    print(f"warning: bag {path} is damaged ({error}); reading its intact prefix: {report.lost_text}"
          + (f"; stopped at {report.stopped_by}" if report.stopped_by else "")
          + ". `sage-ros bag recover` writes it out as a complete bag.", file=sys.stderr, flush=True)
    return reader


def select_connections(reader: Reader, topics: list[str] | None) -> list:
    """The reader's connections on `topics` (all when None); unknown topic names are an error, not a no-op."""
    if not topics:
        return list(reader.connections)
    known = {c.topic for c in reader.connections}
    missing = [t for t in topics if t not in known]
    if missing:
        raise BagError(f"topics not in bag: {missing}; bag has {sorted(known)}")
    return [c for c in reader.connections if c.topic in topics]


def parse_remaps(specs: list[str] | None) -> dict[str, str]:
    """['/a:=/b', ...] -> {'/a': '/b'} (the `ros2 bag play --remap` syntax)."""
    remaps = {}
    for spec in specs or []:
        old, sep, new = spec.partition(":=")
        if not sep or not old or not new:
            raise BagError(f"bad remap {spec!r}: expected FROM:=TO")
        remaps[old] = new
    return remaps


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
