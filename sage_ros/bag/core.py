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


class BagWriteError(BagError):
    """The output bag could not be written (full disk, read-only or vanished directory): its text is one line
    naming the path, the errno and what was kept."""


class _NamingWriter(Writer):
    """rosbags' Writer whose OSErrors name the bag being written (a failed write() on an open file names none)."""

    def write(self, connection, timestamp, data):
        try:
            super().write(connection, timestamp, data)
        except OSError as exc:
            raise _named(exc, self.path) from None


def _named(exc: OSError, path) -> OSError:
    if exc.filename is not None or exc.errno is None:
        return exc
    return type(exc)(exc.errno, exc.strerror or str(exc), str(path))


def _has_data(staging: Path) -> bool:
    """Whether a partial bag holds more than an MCAP magic (something `bag recover` can read)."""
    try:
        return any(f.stat().st_size > 8 for f in staging.rglob("*.mcap"))
    except OSError:
        return False


@contextlib.contextmanager
def atomic_bag_writer(out: str | os.PathLike, keep_partial: bool = False) -> Iterator[Writer]:
    """Yield an open mcap Writer whose bag appears at `out` only once it is closed complete.

    rosbags writes a directory (metadata.yaml is written on close), so sage_ros.atomic's single-file rename
    does not apply; the same idea for a directory: write `<parent>/.<name>.partial-<pid>/<name>/`, then rename
    the finished inner directory onto `out`. A crash leaves only the hidden partial directory, never a bag
    that looks whole.

    An OSError while writing (full disk, read-only or vanished directory) becomes a BagWriteError: one line with
    the path and errno. With `keep_partial` (bag record: the messages exist nowhere else) the partial directory is
    kept as a kill -9 would leave it, for `sage-ros bag recover`; without it (bag encode: derived data) it is
    removed, giving the space back. Any other exception removes it.
    """
    from sage_ros.atomic import os_error_text

    out = Path(out)
    if out.exists():
        raise BagError(f"{out} exists already; not overwriting a bag")
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    except OSError as exc:
        raise BagWriteError(f"cannot write bag {out}: {os_error_text(exc)}; nothing written") from None
    writer = _NamingWriter(staging / out.name, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
    try:
        writer.open()
        yield writer
        writer.close()
        os.replace(staging / out.name, out)
    except OSError as exc:
        with contextlib.suppress(Exception):  # closing flushes its buffer: the same error again
            writer.abort()
        text = f"cannot write bag {out}: {os_error_text(exc, staging / out.name)}"
        if keep_partial and _has_data(staging):
            raise BagWriteError(f"{text}; kept what was written until then in {staging} "
                                f"(`sage-ros bag recover {staging} OUT` makes it a complete bag)") from None
        shutil.rmtree(staging, ignore_errors=True)
        raise BagWriteError(f"{text}; nothing kept" + ("" if keep_partial else " (the partial output was removed)")) \
            from None
    except BaseException:
        with contextlib.suppress(Exception):
            writer.abort()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)
