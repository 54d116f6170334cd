"""`sage-ros bag record`: record live topics (latents, puzzles, diagnostics, images) to an mcap rosbag2 bag.

Messages are taken raw (serialized bytes, no deserialisation) and written with the Kilted message definitions,
so the bag is self-describing (readable by rosbags, the mcap library and `ros2 bag`). Types are resolved from
the ROS graph; a topic that is not published yet is picked up as soon as it appears. Subscriber QoS matches the
publishers (reliable when every publisher is reliable, e.g. latents; best effort otherwise). SIGINT / SIGTERM
stop recording cleanly: the bag is closed and only then appears under its name (never a truncated bag).
A `kill -9` (or power loss) cannot close it: what was recorded until then is in the hidden
`.<name>.partial-<pid>/<name>/<name>.mcap`, whose MCAP chunks are closed and flushed to the OS at least every
FLUSH_PERIOD_S, so at most that much is lost; `sage-ros bag recover` (bag/recover.py) turns it into a complete bag.
A full disk, or a read-only or deleted output directory, ends no worse: recording stops with one line naming the
path and errno (bag.core.BagWriteError), exit 1, and the partial directory is kept as a kill -9 would leave it.
Recording a `latent` / `puzzle` topic also records its latched `<topic>/info` (the model's identity; unless
--no-info), with transient-local QoS, so it is in the bag even when it was published before recording began, and
its `<topic>/telemetry` (crop window, reconstruction error, trust per latent; unless --no-telemetry).
"""
from __future__ import annotations

import argparse
import errno
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from sage_ros.bag.common import BagError, atomic_bag_writer, bag_qos, typestore
from sage_ros.bag.live import StopFlag, init_rclpy, message_class, parse_qos_overrides

RECORD_QOS_CHOICES = ("match", "reliable", "best_effort")
RESOLVE_PERIOD_S = 0.25  # how often unresolved topics are looked up in the graph
FLUSH_PERIOD_S = 0.25  # most seconds of received messages a kill -9 can cost (see flush_chunk)


def flush_chunk(writer) -> None:
    """Close the MCAP chunk being filled and hand the file's bytes to the OS, so a crash keeps them.

    rosbags' mcap writer closes a chunk only once it holds 1 MiB (minutes of latents) and has no public flush:
    this reaches into its storage object (rosbags 0.11: `storage.chunk`, `close_chunk()`, `bio`), and does
    nothing if a rosbags version lays it out differently (test_bag_crash checks it still works). A bag directory
    deleted while recording raises FileNotFoundError here, so recording stops instead of writing to nowhere.
    """
    if not writer.path.is_dir():  # deleted under us: writes would go to an unlinked file, lost at the end
        raise FileNotFoundError(errno.ENOENT, "output directory vanished while recording", str(writer.path))
    storage = getattr(writer, "storage", None)
    chunk = getattr(storage, "chunk", None)
    if chunk is None or not hasattr(storage, "close_chunk") or not chunk.bio.tell():
        return
    try:
        storage.close_chunk()
        storage.bio.flush()
    except OSError as exc:
        if exc.filename is None and exc.errno is not None:
            raise type(exc)(exc.errno, exc.strerror, str(storage.path)) from None
        raise


@dataclass
class RecordOptions:
    topics: list[str]
    duration: float | None = None  # seconds from the start of recording
    max_messages: int | None = None  # total over all topics
    depth: int = 100  # subscriber queue: deep, so a burst is recorded rather than dropped
    qos_overrides: dict[str, str] = field(default_factory=dict)  # topic -> RECORD_QOS_CHOICES
    with_info: bool = True  # also record <topic>/info beside each latent / puzzle topic
    with_telemetry: bool = True  # also record <topic>/telemetry beside each latent / puzzle topic


@dataclass
class RecordSummary:
    received: Counter = field(default_factory=Counter)
    types: dict = field(default_factory=dict)  # topic -> msgtype
    qos: dict = field(default_factory=dict)  # topic -> "reliable" | "best_effort"
    unresolved: list = field(default_factory=list)
    skipped: dict = field(default_factory=dict)  # topic -> why it could not be recorded
    wall_s: float = 0.0
    stopped_by: str = ""

    def lines(self, out) -> list[str]:
        lines = [f"recorded {sum(self.received.values())} messages in {self.wall_s:.2f} s to {out} "
                 f"(stopped by {self.stopped_by})"]
        for topic, msgtype in sorted(self.types.items()):
            lines.append(f"  {topic} [{msgtype}, {self.qos[topic]}]: {self.received[topic]}")
        for topic in self.unresolved:
            lines.append(f"  {topic}: never published while recording (not in the bag)")
        for topic, reason in self.skipped.items():
            lines.append(f"  {topic}: not recorded ({reason})")
        return lines


class BagRecorder:
    def __init__(self, out, options: RecordOptions, stop: StopFlag | None = None, context=None):
        if not options.topics:
            raise BagError("no topics to record")
        self.out = out
        self.options = options
        self.stop = stop
        self.context = context
        self.node = rclpy.create_node("sage_bag_recorder", context=context)
        self.store = typestore()
        self.pending = with_info_topics([self.node.resolve_topic_name(t) for t in options.topics], options.with_info,
                                        options.with_telemetry)
        self.summary = RecordSummary()
        self.subscriptions = []

    def record(self) -> RecordSummary:
        executor = SingleThreadedExecutor(context=self.context)
        executor.add_node(self.node)
        start = time.monotonic()
        next_resolve = start
        self._next_flush = start + FLUSH_PERIOD_S
        with atomic_bag_writer(self.out, keep_partial=True) as writer:  # a full disk keeps what was written
            self.writer = writer
            while not self._finished(start):
                if self.pending and time.monotonic() >= next_resolve:
                    self._resolve_pending()
                    next_resolve = time.monotonic() + RESOLVE_PERIOD_S
                executor.spin_once(timeout_sec=0.05)
                if time.monotonic() >= self._next_flush:
                    flush_chunk(writer)
                    self._next_flush = time.monotonic() + FLUSH_PERIOD_S
            for sub in self.subscriptions:  # no callback may write once the writer starts closing
                self.node.destroy_subscription(sub)
            executor.remove_node(self.node)
        self.summary.wall_s = time.monotonic() - start
        self.summary.unresolved = list(self.pending)
        return self.summary

    def _finished(self, start: float) -> bool:
        if self.stop:
            self.summary.stopped_by = "signal"
        elif self.options.duration is not None and time.monotonic() - start >= self.options.duration:
            self.summary.stopped_by = "duration"
        elif self._limit_reached():
            self.summary.stopped_by = "max-messages"
        return bool(self.summary.stopped_by)

    def _limit_reached(self) -> bool:
        limit = self.options.max_messages
        return limit is not None and sum(self.summary.received.values()) >= limit

    def _resolve_pending(self) -> None:
        graph = dict(self.node.get_topic_names_and_types())
        # only once a publisher is known: a topic seen through its subscribers alone has no QoS to match yet
        for topic in [t for t in self.pending if t in graph and self.node.count_publishers(t)]:
            self.pending.remove(topic)
            types = graph[topic]
            try:
                if len(types) != 1:
                    raise BagError(f"topic {topic} is published with several types {types}")
                self._subscribe(topic, types[0])
            except BagError as exc:  # keep recording the other topics rather than lose the whole bag
                self.summary.skipped[topic] = str(exc)
                print(f"sage-ros bag record: not recording {topic}: {exc}", file=sys.stderr, flush=True)

    def _subscribe(self, topic: str, msgtype: str) -> None:
        reliable, transient = self._publisher_qos(topic)
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=self.options.depth,
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.TRANSIENT_LOCAL if transient else DurabilityPolicy.VOLATILE,
        )
        if msgtype not in self.store.types:
            raise BagError(f"type {msgtype} has no message definition in the Kilted type store")
        message_type = message_class(msgtype)  # before add_connection: a type not installed here is skipped whole
        connection = self.writer.add_connection(
            topic, msgtype, typestore=self.store,
            offered_qos_profiles=[bag_qos(reliable, self.options.depth, transient)])
        callback = lambda data, conn=connection: self._on_message(conn, data)  # noqa: E731 (binds the connection)
        self.subscriptions.append(self.node.create_subscription(message_type, topic, callback, qos, raw=True))
        self.summary.types[topic] = msgtype
        self.summary.qos[topic] = "reliable" if reliable else "best_effort"

    def _publisher_qos(self, topic: str) -> tuple[bool, bool]:
        """(reliable, transient_local) a subscription needs to match every current publisher of `topic`."""
        override = self.options.qos_overrides.get(topic, "match")
        publishers = self.node.get_publishers_info_by_topic(topic)
        all_reliable = all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE for p in publishers)
        all_transient = bool(publishers) and all(
            p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in publishers)
        if override == "match":
            return all_reliable, all_transient
        return override == "reliable", False

    def _on_message(self, connection, data: bytes) -> None:
        if self._limit_reached():
            return  # a callback already queued past the limit: keep the count exact
        self.writer.write(connection, time.time_ns(), data)
        self.summary.received[connection.topic] += 1

    def close(self) -> None:
        self.node.destroy_node()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def with_info_topics(topics: list[str], with_info: bool = True, with_telemetry: bool = False) -> list[str]:
    """`topics` plus `<topic>/info` and `<topic>/telemetry` after each topic named latent or puzzle (the encoders'
    outputs), once each."""
    out = []
    for topic in topics:
        beside = [suffix for suffix, wanted in (("/info", with_info), ("/telemetry", with_telemetry)) if wanted]
        extra = [topic + s for s in beside] if topic.rsplit("/", 1)[-1] in ("latent", "puzzle") else []
        out += [t for t in (topic, *extra) if t not in out]
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output bag directory (must not exist; mcap storage)")
    parser.add_argument("--topics", nargs="+", required=True, metavar="TOPIC", help="topics to record")
    parser.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    parser.add_argument("--max-messages", type=int, default=None, metavar="N",
                        help="stop after N messages in total (over all topics)")
    parser.add_argument("--qos-override", action="append", default=[], metavar="TOPIC=QOS",
                        help=f"subscriber reliability for one topic, one of {RECORD_QOS_CHOICES} (default match)")
    parser.add_argument("--depth", type=int, default=100, help="subscriber queue depth (default 100)")
    parser.add_argument("--no-info", action="store_true",
                        help="do not add <topic>/info (the model's identity) for latent / puzzle topics")
    parser.add_argument("--no-telemetry", action="store_true",
                        help="do not add <topic>/telemetry (crop window, recon error, trust) beside latent / puzzle")


def run(args) -> int:
    stop = StopFlag()
    context = init_rclpy()
    try:
        options = RecordOptions(
            topics=args.topics, duration=args.duration, max_messages=args.max_messages, depth=args.depth,
            qos_overrides=parse_qos_overrides(args.qos_override, RECORD_QOS_CHOICES), with_info=not args.no_info,
            with_telemetry=not args.no_telemetry)
        with BagRecorder(args.out, options, stop=stop, context=context) as recorder:
            print(f"recording {args.topics} to {args.out}", flush=True)
            summary = recorder.record()
    except BagError as exc:
        print(f"sage-ros bag record: error: {exc}", file=sys.stderr)
        return 1
    finally:
        rclpy.try_shutdown(context=context)
    print("\n".join(summary.lines(args.out)), flush=True)
    return 0
