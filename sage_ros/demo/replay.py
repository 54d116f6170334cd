"""The replay on a ROS graph: encoder nodes, then `bag record`, then `bag play`, each its own process, started in
the order that loses no message."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from .common import COMPRESSED_TOPIC, DIAGNOSTICS_TOPIC, ENCODER_READY_LOG, RAW_TOPIC, DemoError
from .models import EncoderRun
from .processes import Child, ProcessGroup, encoder_command, sage_ros_command


# --- the ROS graph ----------------------------------------------------------------------------------------------

RECORDER_NODE = "sage_bag_recorder"  # the node name `sage-ros bag record` uses
MATCH_SETTLE_S = 0.5  # after a subscription shows in the graph: lets its publishers' side finish matching


class GraphProbe:
    """A bare rclpy node in its own context, only for looking at the ROS graph (no topics of its own).

    Why: the recorder subscribes to a topic when it sees it in the graph, endpoint by endpoint as DDS
    discovery reports them. Measured here: its input subscription can be up 1.5 s before the latent one, so
    `bag play --wait-for-subscribers` alone let the first latents go unrecorded. The demo therefore waits
    until the recorder's subscription to every output topic is in the graph before playing."""

    def __init__(self, domain_id: int):
        import rclpy
        from rclpy.signals import SignalHandlerOptions

        self._rclpy = rclpy
        self.context = rclpy.Context()
        # no rclpy signal handlers: Ctrl-C stays ours (children are stopped in order)
        rclpy.init(context=self.context, domain_id=domain_id, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node("sage_demo_graph_probe", context=self.context)

    def has_subscriber(self, node_name: str, topic: str) -> bool:
        return any(info.node_name == node_name for info in self.node.get_subscriptions_info_by_topic(topic))

    def wait_for_subscriber(self, node_name: str, topics: list[str], timeout: float, child: Child | None = None):
        deadline = time.monotonic() + timeout
        while missing := [t for t in topics if not self.has_subscriber(node_name, t)]:
            if child is not None and child.process.poll() is not None:
                raise DemoError(f"{child.name} exited ({child.process.returncode}):\n{child.tail()}")
            if time.monotonic() > deadline:
                raise DemoError(f"{node_name} did not subscribe to {missing} within {timeout:.0f} s")
            time.sleep(0.05)
        time.sleep(MATCH_SETTLE_S)

    def close(self) -> None:
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self.context)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- the replay ------------------------------------------------------------------------------------------------

@dataclass
class ReplayOptions:
    rate: float = 1.0
    start_offset: float = 0.0
    backend: str = "auto"
    qos: str = "reliable"  # play's publisher QoS; the encoders subscribe with the matching reliability
    qos_depth: int = 10  # encoder input queue: with depth 1 a reliable sample can be replaced before it is taken
    max_rate: float = 0.0  # encoder max_rate parameter (0 = as fast as frames come)
    transport: str = "raw"  # raw: /camera/image_raw (Image); compressed: /camera/image_raw/compressed (JPEG)
    diagnostics_period: float = 0.5
    drain_s: float = 2.0  # after play: encoders finish their last frame, /diagnostics reports final counts
    ready_timeout: float = 90.0  # process start-up on a busy 2-core machine is slow

    @property
    def input_topic(self) -> str:
        return COMPRESSED_TOPIC if self.transport == "compressed" else RAW_TOPIC


@dataclass
class ReplayResult:
    bag: Path
    frames_played: int
    wall_s: dict = field(default_factory=dict)


def run_replay(bag_in: Path, bag_out: Path, encoders: list[EncoderRun], group: ProcessGroup,
               options: ReplayOptions, wait_done=None, on_phase=print) -> ReplayResult:
    """encoders (one process each) -> recorder -> player; returns once the recorded bag is closed.

    Order matters for losing nothing: the encoders are active, then the recorder has subscribed to every
    output topic (seen in the graph), then the player waits until the encoders and the recorder subscribe
    to its input topic."""
    times = {}
    started = time.monotonic()
    on_phase(f"starting {len(encoders)} encoder node(s): {', '.join(e.node_name for e in encoders)}")
    nodes = []
    for enc in encoders:
        params = {"image_topics": [RAW_TOPIC], "input_transport": options.transport, "backend": options.backend,
                  "qos_reliability": "reliable" if options.qos == "reliable" else "best_effort",
                  "qos_depth": options.qos_depth, "max_rate": float(options.max_rate),
                  "diagnostics_period": float(options.diagnostics_period)}
        remaps = {enc.default_output: enc.output_topic} if enc.output_topic != enc.default_output else None
        nodes.append(group.start(enc.node_name, encoder_command(enc.preset, enc.bundle.path, enc.node_name, params,
                                                                remaps)))
    for node in nodes:
        node.wait_for_log(ENCODER_READY_LOG, options.ready_timeout)
    times["encoders_ready"] = time.monotonic() - started
    topics = [options.input_topic, *(e.output_topic for e in encoders), DIAGNOSTICS_TOPIC]
    recorder = group.start("recorder", sage_ros_command("bag", "record", bag_out, "--topics", *topics))
    with GraphProbe(int(group.env["ROS_DOMAIN_ID"])) as probe:  # telemetry too: the sheet plots it over the replay
        probe.wait_for_subscriber(RECORDER_NODE, topics[1:] + [e.output_topic + "/telemetry" for e in encoders],
                                  options.ready_timeout, recorder)
    times["recorder_ready"] = time.monotonic() - started
    on_phase(f"playing {bag_in} {options.input_topic} at rate {options.rate} from {options.start_offset} s")
    play_started = time.monotonic()
    player = group.start("player", sage_ros_command(
        "bag", "play", bag_in, "--topics", options.input_topic, "--rate", options.rate, "--start-offset", options.start_offset,
        "--qos", options.qos, "--wait-for-subscribers", len(encoders) + 1, "--wait-timeout", options.ready_timeout))
    if player.wait(timeout=options.ready_timeout + 600) != 0:
        raise DemoError(f"bag play failed ({player.process.returncode}):\n{player.tail()}")
    times["play"] = time.monotonic() - play_started
    frames_played = _played_count(player.log(), options.input_topic)
    (wait_done or (lambda: time.sleep(options.drain_s)))()
    group.stop(recorder, grace=60.0)
    if recorder.process.returncode != 0 or not Path(bag_out).exists():
        raise DemoError(f"bag record failed ({recorder.process.returncode}):\n{recorder.tail()}")
    for node in nodes:
        group.stop(node)
    times["replay_total"] = time.monotonic() - started
    return ReplayResult(Path(bag_out), frames_played, times)


def _played_count(play_log: str, topic: str) -> int:
    for line in play_log.splitlines():
        if line.strip().startswith(topic + ":") and "published" in line:
            return int(line.split(":", 1)[1].split()[0])
    raise DemoError(f"bag play did not report what it published:\n{play_log[-2000:]}")
