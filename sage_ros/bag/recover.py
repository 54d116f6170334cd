"""`sage-ros bag recover`: turn a partial or truncated rosbag2 bag into a complete, readable one (as `ros2 bag
reindex` does for a bag whose metadata is missing, and more: a truncated file keeps its intact prefix).

What it reads:
- a bag directory (metadata.yaml + storage files), a bare .mcap / .db3 file, or the hidden
  `.<name>.partial-<pid>/` directory `bag record` leaves when it is killed (no metadata.yaml, no MCAP summary);
- MCAP: read as a stream with the `mcap` library (schemas, channels, messages, chunk by chunk) up to the first
  record that is cut off or corrupt; what follows is lost. `bag record` closes a chunk at least every
  `record.FLUSH_PERIOD_S`, so a `kill -9` loses at most that much;
- sqlite3: SQLite refuses a file shorter than the page count its header records ("database disk image is
  malformed"), and Python's sqlite3 has no `.recover`; so a copy gets its header's page count set to the pages
  that are there (hand-written: 4 bytes at offset 28 of the SQLite header, documented in the SQLite file format),
  and rows are read by id until the first unreadable page, then probed past it.

The output is a new mcap bag written with rosbags (message definitions from the bag, else the Kilted type store),
so rosbags, the mcap library and `ros2 bag` read it. `salvage_to(path, out)` is what `bag play` and `bag encode`
use (through bag.common.open_reader) when a bag does not open: they read the intact prefix with a warning.
"""
from __future__ import annotations

import argparse
import shutil
import sqlite3
import struct
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import yaml

from sage_ros.bag.core import BagError, atomic_bag_writer, bag_qos, typestore

SQLITE_MAGIC = b"SQLite format 3\x00"
MCAP_MAGIC = b"\x89MCAP0\r\n"


@dataclass
class Topic:
    name: str
    msgtype: str
    msgdef: str | None = None  # as stored (ros2msg / ros2idl text), when the bag has one
    qos: str = ""  # offered_qos_profiles YAML, as rosbag2 stores it
    serialization_format: str = "cdr"


@dataclass
class SalvageReport:
    source: Path
    storage: str = ""
    files: list[Path] = field(default_factory=list)
    recovered: int = 0
    declared: int | None = None  # message_count in metadata.yaml, when there is one
    bytes_total: int = 0
    bytes_read: int = 0  # up to the end of the last intact record (mcap)
    stopped_by: str = ""  # why reading stopped early ("" = the file ended cleanly)
    skipped_topics: dict = field(default_factory=dict)

    @property
    def lost_text(self) -> str:
        if self.declared is not None:
            lost = max(self.declared - self.recovered, 0)
            return (f"{self.recovered} of the {self.declared} messages metadata.yaml declares recovered, {lost} lost "
                    f"({100.0 * lost / max(self.declared, 1):.2f} %)")
        tail = f"; {self.bytes_total - self.bytes_read} of {self.bytes_total} bytes after the last intact record " \
               f"unreadable" if self.bytes_total and self.bytes_read else ""
        return f"{self.recovered} messages recovered (no metadata.yaml says how many there were){tail}"

    def lines(self) -> list[str]:
        out = [f"{self.source} ({self.storage}): {self.lost_text}"]
        if self.stopped_by:
            out.append(f"  stopped at: {self.stopped_by}")
        for topic, reason in self.skipped_topics.items():
            out.append(f"  {topic}: not recovered ({reason})")
        return out


def _storage_files(path: Path) -> tuple[list[Path], dict | None]:
    """The storage files of a bag directory / partial directory / bare file, and its metadata (or None)."""
    if path.is_file():
        return [path], None
    if not path.is_dir():
        raise BagError(f"bag not found: {path}")
    metadata = None
    meta_path = path / "metadata.yaml"
    if meta_path.is_file():
        try:
            metadata = yaml.safe_load(meta_path.read_text())["rosbag2_bagfile_information"]
        except (OSError, yaml.YAMLError, KeyError, TypeError):
            metadata = None
    if metadata and metadata.get("relative_file_paths"):
        files = [path / name for name in metadata["relative_file_paths"] if (path / name).is_file()]
        if files:
            return files, metadata
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".mcap", ".db3"))
    if not files:
        raise BagError(f"{path}: no .mcap or .db3 file in it")
    return files, metadata


def _kind(path: Path) -> str:
    with open(path, "rb") as handle:
        head = handle.read(16)
    if len(head) < len(MCAP_MAGIC):
        raise BagError(f"{path}: {len(head)} bytes, no storage header yet (killed before anything was flushed)")
    if head.startswith(MCAP_MAGIC):
        return "mcap"
    if head.startswith(SQLITE_MAGIC):
        return "sqlite3"
    raise BagError(f"{path}: neither an MCAP nor an SQLite file")


# --- mcap ------------------------------------------------------------------------------------------------------

def _mcap_messages(path: Path, topics: dict, report: SalvageReport) -> Iterator[tuple[str, int, bytes]]:
    from io import BytesIO

    from mcap.records import Channel, Message, Schema
    from mcap.stream_reader import StreamReader

    schemas: dict[int, Schema] = {}
    channels: dict[int, str] = {}

    def handle_record(record) -> tuple[str, int, bytes] | None:
        if isinstance(record, Schema):
            schemas[record.id] = record
        elif isinstance(record, Channel):
            schema = schemas.get(record.schema_id)
            msgdef = schema.data.decode("utf-8", "replace") if schema is not None else None
            topics.setdefault(record.topic, Topic(record.topic, schema.name if schema is not None else "",
                                                  msgdef or None, record.metadata.get("offered_qos_profiles", ""),
                                                  record.message_encoding or "cdr"))
            channels[record.id] = record.topic
        elif isinstance(record, Message) and record.channel_id in channels:
            return channels[record.channel_id], record.log_time, record.data
        return None

    report.bytes_total += path.stat().st_size
    intact = len(MCAP_MAGIC)  # end of the last complete top-level record
    with open(path, "rb") as handle:
        reader = StreamReader(handle, validate_crcs=True)
        try:
            for record in reader.records:
                intact = handle.tell()  # inside a chunk: the end of that chunk, which decoded whole
                message = handle_record(record)
                if message is not None:
                    report.bytes_read = intact
                    yield message
            report.bytes_read = report.bytes_total
            return
        except Exception as exc:  # noqa: BLE001 - EndOfFile, McapError, CRC / decompression errors: the cut
            report.stopped_by = f"{type(exc).__name__} after byte {intact}: {exc or 'file ends inside a record'}"
        # The cut record may be a chunk: an uncompressed one (rosbags' and rosbag2's default) still holds whole
        # records up to the cut. Its layout (MCAP spec, Chunk op 0x06): start, end, uncompressed size (u64 each),
        # crc (u32), compression (u32 length + string), records length (u64), records. Hand-written because the
        # mcap library reads a chunk only whole.
        handle.seek(intact)
        tail = handle.read()
    if len(tail) < 9 + 28 + 4 or tail[0] != 0x06:
        return
    body = tail[9:]
    compression_length = struct.unpack_from("<I", body, 28)[0]
    if compression_length != 0:
        return  # a compressed chunk cut short cannot be decompressed
    records = BytesIO(body[28 + 4 + 8:])
    try:
        for record in StreamReader(records, skip_magic=True).records:
            message = handle_record(record)
            if message is not None:
                report.bytes_read = intact + 9 + 28 + 4 + 8 + records.tell()
                yield message
    except Exception:  # noqa: BLE001 - the cut inside the chunk
        pass


# --- sqlite3 ---------------------------------------------------------------------------------------------------

def _readable_sqlite_copy(path: Path, workdir: Path) -> Path:
    """A copy whose header page count matches the pages present (see the module docstring)."""
    copy = workdir / path.name
    shutil.copyfile(path, copy)
    with open(copy, "r+b") as handle:
        header = handle.read(100)
        page_size = struct.unpack(">H", header[16:18])[0]
        page_size = 65536 if page_size == 1 else page_size
        pages = handle.seek(0, 2) // page_size
        handle.truncate(pages * page_size)
        handle.seek(28)
        handle.write(struct.pack(">I", pages))
    for suffix in ("-wal", "-shm"):  # a crash with a write-ahead log leaves committed pages there
        if Path(str(path) + suffix).is_file():
            shutil.copyfile(str(path) + suffix, str(copy) + suffix)
    return copy


def _sqlite_messages(path: Path, topics: dict, report: SalvageReport) -> Iterator[tuple[str, int, bytes]]:
    report.bytes_total += path.stat().st_size
    with tempfile.TemporaryDirectory(prefix="sage_ros_recover_") as workdir:
        connection = sqlite3.connect(_readable_sqlite_copy(path, Path(workdir)))
        try:
            try:
                columns = {row[1] for row in connection.execute("PRAGMA table_info(topics)")}
                qos_column = "offered_qos_profiles" if "offered_qos_profiles" in columns else "''"
                rows = connection.execute(f"SELECT id, name, type, serialization_format, {qos_column} FROM topics")
                by_id = {}
                for topic_id, name, msgtype, fmt, qos in rows.fetchall():
                    topics.setdefault(name, Topic(name, msgtype, None, qos or "", fmt or "cdr"))
                    by_id[topic_id] = name
            except sqlite3.DatabaseError as exc:
                raise BagError(f"{path}: its topics table is unreadable ({exc}); nothing to recover") from None
            try:
                for msgtype, text in connection.execute(
                        "SELECT topic_type, encoded_message_definition FROM message_definitions").fetchall():
                    for topic in topics.values():
                        if topic.msgtype == msgtype and text:
                            topic.msgdef = text
            except sqlite3.DatabaseError:
                pass  # older bags have no message_definitions table; the type store fills in
            last, misses = 0, 0
            while misses < 256:  # rows past an unreadable page may still be readable: probe ahead
                try:
                    for row_id, topic_id, stamp, data in connection.execute(
                            "SELECT id, topic_id, timestamp, data FROM messages WHERE id > ? ORDER BY id", (last,)):
                        last, misses = row_id, 0
                        if topic_id in by_id:
                            yield by_id[topic_id], int(stamp), bytes(data)
                    break
                except sqlite3.DatabaseError as exc:
                    report.stopped_by = report.stopped_by or f"sqlite: {exc} after message id {last}"
                    last, misses = last + 1, misses + 1
        finally:
            connection.close()


# --- writing ---------------------------------------------------------------------------------------------------

def _add_connection(writer, store, topic: Topic, report: SalvageReport):

    qos_kwargs = {}
    try:
        from rosbags.rosbag2.metadata import parse_qos
        qos_kwargs = {"offered_qos_profiles": parse_qos(topic.qos)} if topic.qos else {}
    except Exception:  # noqa: BLE001 - an unparsable QoS string: record the default instead of losing the topic
        qos_kwargs = {}
    if not qos_kwargs:
        qos_kwargs = {"offered_qos_profiles": [bag_qos(False, 10)]}
    if topic.msgtype in store.types:
        return writer.add_connection(topic.name, topic.msgtype,
                                     typestore=store, serialization_format=topic.serialization_format, **qos_kwargs)
    if topic.msgdef:
        from rosbags.typesys import get_types_from_msg

        try:
            store.register(get_types_from_msg(topic.msgdef, topic.msgtype))
            return writer.add_connection(topic.name, topic.msgtype, typestore=store,
                                         serialization_format=topic.serialization_format, **qos_kwargs)
        except Exception as exc:  # noqa: BLE001 - rosbags' parser raises its own types
            report.skipped_topics[topic.name] = f"message definition of {topic.msgtype} unusable: {exc}"
            return None
    report.skipped_topics[topic.name] = f"type {topic.msgtype} unknown and the bag holds no definition of it"
    return None


def salvage_to(path: str | Path, out: str | Path) -> SalvageReport:
    """Read the intact part of the bag at `path` and write it as a complete mcap bag at `out` (must not exist)."""
    path = Path(path)
    files, metadata = _storage_files(path)
    report = SalvageReport(source=path, files=files)
    if metadata is not None:
        report.declared = metadata.get("message_count")
    store = typestore()
    topics: dict[str, Topic] = {}
    connections: dict[str, object] = {}
    kinds = {_kind(f) for f in files}
    report.storage = "/".join(sorted(kinds))
    with atomic_bag_writer(out) as writer:
        for storage_file in files:
            source = _mcap_messages if _kind(storage_file) == "mcap" else _sqlite_messages
            for topic_name, stamp, data in source(storage_file, topics, report):
                if topic_name not in connections:
                    connections[topic_name] = _add_connection(writer, store, topics[topic_name], report)
                connection = connections[topic_name]
                if connection is not None:
                    writer.write(connection, stamp, data)
                    report.recovered += 1
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sage_ros.usage import existing_path

    parser.add_argument("bag", type=existing_path, help="damaged bag: a bag directory, a .mcap / .db3 file, or the hidden "
                                    ".<name>.partial-<pid> directory a killed `bag record` left")
    parser.add_argument("out", help="recovered bag directory to write (must not exist; mcap storage)")


def run(args) -> int:
    try:
        report = salvage_to(args.bag, args.out)
    except BagError as exc:
        print(f"sage-ros bag recover: error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(report.lines()))
    print(f"wrote {args.out}")
    return 0 if report.recovered else 1
