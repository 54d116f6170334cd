"""`sage-ros bag play`: publish a rosbag2 bag (sqlite3 or mcap) on live topics, like `ros2 bag play`.

The recorded serialized CDR bytes are published as they are (rclpy's Publisher.publish accepts bytes), so
there is no deserialise/serialise cost per frame and header stamps stay exactly as recorded. Timing follows the
bag's receive timestamps, scaled by --rate. `/clock` (rosgraph_msgs/Clock) is published when asked, so nodes
can run with use_sim_time. A topic recorded as transient-local (a latched `<topic>/info`, /tf_static) is played with
its recorded QoS unless overridden, so it stays latched: a node that starts after it was played still gets it.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import rclpy
from rclpy.duration import Duration
from rclpy._rclpy_pybind11 import RCLError
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rosgraph_msgs.msg import Clock

from sage_ros.bag.common import BagError, open_reader, parse_remaps, select_connections, typestore
from sage_ros.bag.live import (QOS_CHOICES, StopFlag, init_rclpy, message_class, named_qos, parse_qos_overrides,
                               qos_from_bag)

# A reliable publisher matches both reliable and best-effort subscribers (rclpy's TimeSource is best effort).
CLOCK_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)


@dataclass
class PlayOptions:
    rate: float = 1.0
    loop: bool = False
    topics: list[str] | None = None  # recorded names; None = all
    remaps: dict[str, str] = field(default_factory=dict)
    clock_hz: float | None = None  # None = no /clock
    start_offset: float = 0.0  # seconds into the bag
    qos: str = "sensor"  # default publisher QoS, see live.QOS_CHOICES
    qos_overrides: dict[str, str] = field(default_factory=dict)  # recorded topic -> QoS name
    wait_for_subscribers: int = 0  # per played topic
    wait_timeout: float = 10.0
    settle: float = 0.3  # after matching: lets the subscriber side finish matching too (best effort drops until then)
    linger: float = 0.3  # after the last message, before the node goes away


@dataclass
class PlaySummary:
    published: Counter = field(default_factory=Counter)  # output topic -> messages
    errors: Counter = field(default_factory=Counter)  # output topic -> failed publish calls
    skipped: Counter = field(default_factory=Counter)  # output topic -> payloads that do not deserialise
    clock_ticks: int = 0
    wall_s: float = 0.0
    bag_s: float = 0.0  # bag time covered (all passes)
    passes: int = 0
    interrupted: bool = False

    def lines(self) -> list[str]:
        out = [f"played {sum(self.published.values())} messages in {self.wall_s:.2f} s wall "
               f"({self.bag_s:.2f} s of bag time, {self.passes} pass(es){', interrupted' if self.interrupted else ''})"]
        for topic in sorted(self.published | self.errors | self.skipped):
            out.append(f"  {topic}: {self.published[topic]} published, {self.errors[topic]} publish errors"
                       + (f", {self.skipped[topic]} undecodable skipped" if self.skipped[topic] else ""))
        if self.clock_ticks:
            out.append(f"  /clock: {self.clock_ticks} ticks")
        return out


class BagPlayer:
    """One node publishing one bag; `play()` returns a PlaySummary. Use as a context manager."""

    def __init__(self, bag, options: PlayOptions, stop: StopFlag | None = None, context=None):
        if not math.isfinite(options.rate) or options.rate <= 0:
            raise BagError(f"--rate must be a finite number > 0, got {options.rate}")
        if options.clock_hz is not None and (not math.isfinite(options.clock_hz) or options.clock_hz <= 0):
            raise BagError(f"--clock rate must be a finite number > 0 Hz, got {options.clock_hz}")
        if not math.isfinite(options.start_offset) or options.start_offset < 0:
            raise BagError(f"--start-offset must be a finite number >= 0, got {options.start_offset}")
        self.options = options
        self.stop = stop
        self.reader = open_reader(bag)
        self.connections = select_connections(self.reader, options.topics)
        self.context = context
        self.node = rclpy.create_node("sage_bag_player", context=context)
        self.publishers = self._make_publishers()  # output topic -> Publisher
        self.classes = {c.id: message_class(c.msgtype) for c in self.connections}  # to check each payload
        self.store = typestore()
        self.clock_pub = self.node.create_publisher(Clock, "/clock", CLOCK_QOS) if options.clock_hz else None

    def _make_publishers(self) -> dict:
        publishers = {}
        for conn in self.connections:
            topic = self.options.remaps.get(conn.topic, conn.topic)
            if topic not in publishers:
                publishers[topic] = self.node.create_publisher(message_class(conn.msgtype), topic, self._qos_for(conn))
        return publishers

    def _qos_for(self, conn) -> QoSProfile:
        recorded = getattr(conn.ext, "offered_qos_profiles", None)
        latched = bool(recorded) and recorded[0].durability.name == "TRANSIENT_LOCAL"
        name = self.options.qos_overrides.get(conn.topic, "recorded" if latched else self.options.qos)
        if name == "recorded":
            return qos_from_bag(recorded[0]) if recorded else named_qos("reliable")
        return named_qos(name)

    def wait_for_subscribers(self) -> None:
        """Block until every played topic has >= N subscribers; BagError on timeout (tests rely on this)."""
        wanted = self.options.wait_for_subscribers
        if wanted <= 0:
            return
        deadline = time.monotonic() + self.options.wait_timeout
        while True:
            counts = {topic: pub.get_subscription_count() for topic, pub in self.publishers.items()}
            missing = {topic: count for topic, count in counts.items() if count < wanted}
            if not missing:
                break
            if time.monotonic() > deadline:
                raise BagError(f"timed out after {self.options.wait_timeout} s waiting for {wanted} "
                               f"subscriber(s): {missing}")
            if self.stop is None:
                time.sleep(0.02)
            elif self.stop.wait(0.02):
                return
        time.sleep(self.options.settle)

    def play(self) -> PlaySummary:
        summary = PlaySummary()
        start_ns = self.reader.start_time + int(self.options.start_offset * 1e9)
        self._check_something_to_play(start_ns)
        self.wait_for_subscribers()
        topic_of = {c.id: self.options.remaps.get(c.topic, c.topic) for c in self.connections}
        wall_start = time.monotonic()
        while not self.stop:
            summary.passes += 1
            before = sum(summary.published.values())
            last_ns, read = self._play_once(start_ns, topic_of, summary)
            summary.bag_s += max(0, last_ns - start_ns) / 1e9
            if not self.options.loop or not read or sum(summary.published.values()) == before:
                break  # a pass that played nothing: looping again would only spin
        summary.wall_s = time.monotonic() - wall_start
        summary.interrupted = bool(self.stop)
        self._flush()
        return summary

    def _check_something_to_play(self, start_ns: int) -> None:
        """An empty selection or a start past the end is an error before anything starts (with --loop it spun
        at 100 % CPU forever, playing nothing)."""
        topics = sorted({c.topic for c in self.connections})
        if not sum(c.msgcount for c in self.connections):
            raise BagError(f"nothing to play: the bag holds no messages on {topics}")
        if start_ns >= self.reader.end_time:
            raise BagError(f"nothing to play: --start-offset {self.options.start_offset} s is past the bag's end "
                           f"({(self.reader.end_time - self.reader.start_time) / 1e9:.3f} s of messages)")

    def _flush(self) -> None:
        """Let the last messages leave before the process exits (measured: without it the last frame is often lost).

        Reliable publishers wait for acknowledgements; best-effort ones have none to wait for, so linger briefly.
        """
        for publisher in self.publishers.values():
            publisher.wait_for_all_acked(Duration(seconds=1.0))
        time.sleep(self.options.linger)

    def _play_once(self, start_ns: int, topic_of: dict, summary: PlaySummary) -> tuple[int, int]:
        """One pass from start_ns; returns (bag time of the last message, messages read)."""
        wall0 = None
        last_ns, read = start_ns, 0
        for conn, stamp_ns, data in self.reader.messages(connections=self.connections, start=start_ns):
            read += 1
            topic = topic_of[conn.id]
            if not self._deserialises(conn, stamp_ns, data):  # before the wait, so checking costs no play time
                summary.skipped[topic] += 1
                continue
            if wall0 is None:  # after the first check, which pays rosbags' one-time deserialiser set-up
                wall0 = self._next_clock = time.monotonic()
            due = wall0 + (stamp_ns - start_ns) / 1e9 / self.options.rate
            if not self._sleep_until(due, wall0, start_ns, summary):
                break
            try:
                self.publishers[topic].publish(data)
                summary.published[topic] += 1
            except RCLError:  # large frames back to back can fail in the middleware: count and go on
                summary.errors[topic] += 1
            last_ns = stamp_ns
        return last_ns, read

    def _deserialises(self, conn, stamp_ns: int, data: bytes) -> bool:
        """Whether the middleware can read this payload: a 0-byte or cut one published reliable stalled the
        subscriber side ~5 s (the next frames lost with it), so it is skipped and counted instead. rosbags'
        deserialiser where it knows the type (several times faster than rclpy's on large frames), else rclpy's."""
        try:
            if conn.msgtype in self.store.types:
                self.store.deserialize_cdr(data, conn.msgtype)
            else:
                deserialize_message(data, self.classes[conn.id])
            return True
        except Exception as exc:  # noqa: BLE001 - rclpy raises RMWError, others for hostile bytes
            print(f"sage-ros bag play: skipping an undecodable {conn.msgtype} message of {len(data)} bytes on "
                  f"{conn.topic} at {stamp_ns} ({type(exc).__name__})", file=sys.stderr, flush=True)
            return False

    def _sleep_until(self, due: float, wall0: float, start_ns: int, summary: PlaySummary) -> bool:
        """Wait for `due` (monotonic s), publishing /clock ticks meanwhile. False when asked to stop."""
        while True:
            now = time.monotonic()
            if self.clock_pub is not None and now >= self._next_clock:
                self._publish_clock(start_ns + int((now - wall0) * self.options.rate * 1e9))
                summary.clock_ticks += 1
                self._next_clock = max(self._next_clock + 1.0 / self.options.clock_hz, now)
            if self.stop:
                return False
            if now >= due:
                return True
            wake = min(due, self._next_clock) if self.clock_pub is not None else due
            if self.stop is not None:
                self.stop.wait(wake - now)
            else:
                time.sleep(max(0.0, wake - now))

    def _publish_clock(self, bag_ns: int) -> None:
        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = divmod(bag_ns, 1_000_000_000)
        self.clock_pub.publish(msg)

    def close(self) -> None:
        self.node.destroy_node()
        self.reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def finite_number(minimum: float, inclusive: bool = True):
    """An argparse type: a finite float >= minimum (> minimum unless inclusive); nan, inf and the rest are refused
    at parsing (`--rate nan` used to be accepted and play nothing, forever)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"must be a finite number {'>=' if inclusive else '>'} {minimum:g}, "
                                             f"got {text!r}")
        return value
    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sage_ros.usage import existing_path

    parser.add_argument("bag", type=existing_path, help="rosbag2 directory (sqlite3 or mcap) or a bare .mcap file")
    parser.add_argument("--rate", type=finite_number(minimum=0.0, inclusive=False), default=1.0,
                        help="playback speed factor, a finite number > 0 (default 1.0)")
    parser.add_argument("--loop", action="store_true", help="play again from the start when the bag ends")
    parser.add_argument("--topics", nargs="+", metavar="TOPIC", help="play only these recorded topics")
    parser.add_argument("--remap", action="append", default=[], metavar="FROM:=TO", help="rename a topic (repeatable)")
    parser.add_argument("--clock", nargs="?", type=finite_number(minimum=0.0, inclusive=False), const=100.0,
                        default=None, metavar="HZ",
                        help="publish /clock from bag time at HZ (default 100 when given without a value)")
    parser.add_argument("--start-offset", type=finite_number(minimum=0.0), default=0.0, metavar="S",
                        help="start S seconds into the bag")
    parser.add_argument("--qos", default="sensor", choices=QOS_CHOICES,
                        help="publisher QoS for every topic: sensor (best effort, default), reliable, "
                             "or recorded (the first offered profile stored in the bag)")
    parser.add_argument("--qos-override", action="append", default=[], metavar="TOPIC=QOS",
                        help="per-topic publisher QoS (recorded topic name), repeatable")
    parser.add_argument("--wait-for-subscribers", type=int, default=0, metavar="N",
                        help="before playing, wait until every played topic has N subscribers")
    parser.add_argument("--wait-timeout", type=finite_number(minimum=0.0), default=10.0, metavar="S",
                        help="give up (exit 1) when subscribers have not appeared after S seconds")


def options_from_args(args) -> PlayOptions:
    return PlayOptions(
        rate=args.rate, loop=args.loop, topics=args.topics, remaps=parse_remaps(args.remap),
        clock_hz=args.clock, start_offset=args.start_offset, qos=args.qos,
        qos_overrides=parse_qos_overrides(args.qos_override), wait_for_subscribers=args.wait_for_subscribers,
        wait_timeout=args.wait_timeout,
    )


def run(args) -> int:
    stop = StopFlag()
    context = init_rclpy()
    try:
        with BagPlayer(args.bag, options_from_args(args), stop=stop, context=context) as player:
            summary = player.play()
    except BagError as exc:
        print(f"sage-ros bag play: error: {exc}", file=sys.stderr)
        return 1
    finally:
        rclpy.try_shutdown(context=context)
    print("\n".join(summary.lines()), flush=True)
    if not sum(summary.published.values()) and not summary.interrupted:
        print(f"sage-ros bag play: error: nothing was played ({sum(summary.skipped.values())} undecodable "
              f"messages skipped, {sum(summary.errors.values())} publish errors)", file=sys.stderr, flush=True)
        return 1
    return 0
