"""Bag helpers shared by play / record / encode: opening (with salvage of a damaged bag), topic selection, remaps.

No rclpy here, so `bag encode` runs on a machine without ROS. The leaf helpers (BagError, typestore, bag_qos,
atomic_bag_writer) live in bag.core and are re-exported here; imports go common -> recover -> core, never back.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from rosbags.rosbag2 import Reader

from sage_ros.bag.core import (BAG_VERSION, BagError, BagWriteError, atomic_bag_writer, bag_qos,  # noqa: F401
                               typestore)  # (re-exported)
from sage_ros.bag.recover import salvage_to

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
    disagreement = metadata_disagreement(reader)
    if disagreement:
        reader.close()
        return _open_intact_prefix(path, disagreement, lying_metadata=True)
    return reader


def metadata_disagreement(reader: Reader) -> str:
    """'' when metadata.yaml agrees with the storage files' own connection records, else what disagrees.

    rosbags takes a bag directory's topic names, types, QoS and counts from metadata.yaml and reads a stored
    connection only when a metadata topic matches it exactly, so a metadata.yaml that lies about a topic hides
    its messages (`bag encode` used to report "encoded 0 frames", exit 0, for a bag of valid frames), and one
    that says 0 messages gives a start time of 2**63 - 1. The storage's records (MCAP channels and schemas, the
    sqlite3 topics table) are what the data was written with; this compares them with rosbags' own matching rule.
    """
    storages = getattr(reader.storage, "storages", None)
    if not storages:  # a bare .mcap / .db3: its connections are the storage's own already
        return ""
    declared = reader.connections
    hidden = [f"{stored.topic} [{stored.msgtype}]" for storage in storages for stored in storage.connections
              if not any(c.topic == stored.topic and c.msgtype == stored.msgtype and c.ext == stored.ext
                         and (not stored.digest or not c.digest or c.digest == stored.digest) for c in declared)]
    problems = [f"it does not list the stored topics {hidden}"] if hidden else []
    stored_count = sum(c.msgcount for storage in storages for c in storage.connections)
    if stored_count and stored_count != reader.message_count:  # 0: an MCAP without statistics counts nothing
        problems.append(f"it declares {reader.message_count} messages, the storage holds {stored_count}")
    return "; ".join(problems)


def _open_intact_prefix(path: Path, error: Exception | str, lying_metadata: bool = False) -> Reader:
    """A bag that does not open (truncated, killed while recording, no metadata.yaml) or whose metadata.yaml
    disagrees with its storage: recover what the storage holds into a temporary bag (bag.recover, which reads the
    storage's own records, not metadata.yaml) and read that, with a warning saying how much was lost."""
    import sys
    import tempfile
    import weakref

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
    if lying_metadata:
        print(f"warning: bag {path}: metadata.yaml disagrees with the storage's own records ({error}); reading "
              f"what the storage holds: {report.recovered} messages", file=sys.stderr, flush=True)
        return reader
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
