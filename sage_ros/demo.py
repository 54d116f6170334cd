"""`sage-ros demo`: real camera frames in, latents out, over real DDS, with a summary and a picture.

    sage-ros demo --out demo_out [--models models/] [--rate 1.0] [--start-offset 0] [--update-docs]

The bundled real-camera bag (data_cache/bags/vtest, /camera/image_raw: 20 s of vtest.avi, 768x576 rgb8 at 10 fps)
is replayed by `sage-ros bag play` into one encoder node per model (TinyVAE fp32 / int8 / int4 and the
VisionPuzzleVAE, each its own process and DDS participant, as `ros2 run sage_ros tinyvae_encoder` starts it),
and `sage-ros bag record` records the input, every latent / puzzle topic and /diagnostics into one mcap bag.
Everything afterwards is read back from that bag: frames in/out, rates, latency percentiles (the recorder's
receive time of a latent minus its receive time of the source frame with the same header stamp: one clock),
drops (the nodes' /diagnostics counters) and the bundles' file sizes. The contact sheet decodes the recorded
latents with each bundle's decoder.onnx (sage_ros.runtime backends) beside the frames they came from.

Transport: the replay path is reliable (play --qos reliable, encoders qos_reliability:=reliable, qos_depth 10):
measured here, 768x576 rgb8 frames over best-effort DDS lose 30-60 % even at 5 fps under load, which would make
the demo about DDS rather than the encoders. The nodes still drop frames the latest-frame-wins way when they
fall behind, and count them.

Also the building blocks of the replay tests (test/test_replay_*.py): ProcessGroup, encoder_command,
sage_ros_command, read_recording.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sage_ros.atomic import atomic_path, atomic_write_json, atomic_write_text

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RAW_TOPIC = "/camera/image_raw"
COMPRESSED_TOPIC = RAW_TOPIC + "/compressed"  # the whole video as JPEG (79.5 s, 795 frames)
DIAGNOSTICS_TOPIC = "/diagnostics"
TINYVAE_PRECISIONS = ("fp32", "int8", "int4")  # the contact sheet's reconstruction columns, in this order
ENCODER_READY_LOG = "backend warm"  # the encoder node logs this once it is active
UNTRAINED_MARK = "untrained"  # in a bundle's name or metrics note: seeded test bundles, never shipped


class DemoError(RuntimeError):
    """Something the demo needs is missing or a step failed; the message says which and what to do."""


# --- child processes -------------------------------------------------------------------------------------------

def _die_with_parent() -> None:
    """Runs in each child before exec: Linux sends it SIGTERM if the demo itself dies (even by SIGKILL),
    so no encoder or recorder outlives a killed demo. Best effort: a no-op where prctl does not exist."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def wait_for_log(self, text: str, timeout: float) -> None:
        """Block until `text` appears in the child's log; DemoError if it exits or the time runs out."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if self.process.poll() is not None:
                raise DemoError(f"{self.name} exited ({self.process.returncode}) before it was ready; its log "
                                f"({self.log_path}):\n{self.tail()}")
            if time.monotonic() > deadline:
                raise DemoError(f"{self.name} not ready after {timeout:.0f} s; its log ({self.log_path}):\n{self.tail()}")
            time.sleep(0.05)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DemoError(f"{self.name} still running after {timeout:.0f} s; its log ({self.log_path}):\n"
                            f"{self.tail()}") from None


class ProcessGroup:
    """Child processes (each in its own session, so a terminal Ctrl-C reaches only us and we stop them in
    order), logs under `log_dir`. `stop_all()` (also on exit from `with`) stops every child still running:
    SIGINT first (nodes shut down, the recorder closes its bag), SIGKILL after `grace` seconds."""

    def __init__(self, log_dir: Path, env: dict[str, str], grace: float = 10.0):
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.grace = grace
        self.children: list[Child] = []

    def start(self, name: str, command: list[str]) -> Child:
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "wb") as log:  # the child keeps its own descriptor
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=REPO,
                                       start_new_session=True, preexec_fn=_die_with_parent)
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def stop(self, child: Child, grace: float | None = None) -> int:
        if child.process.poll() is None:
            self._signal(child, signal.SIGINT)
            try:
                child.process.wait(timeout=self.grace if grace is None else grace)
            except subprocess.TimeoutExpired:
                self._signal(child, signal.SIGKILL)
                child.process.wait(timeout=5)
        return child.process.returncode

    @staticmethod
    def _signal(child: Child, signum: int) -> None:
        try:
            os.killpg(child.process.pid, signum)  # its session = its process group; reaches any helper it forked
        except ProcessLookupError:
            pass

    def stop_all(self) -> None:
        """Newest first: the player (no more input), the recorder (closes its bag), then the encoders.
        A second Ctrl-C while this runs is ignored: it must not leave children behind."""
        import threading

        main_thread = threading.current_thread() is threading.main_thread()
        previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)} if main_thread else {}
        try:
            for child in reversed(self.children):
                self.stop(child)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop_all()


def child_env(domain_id: int | None = None, large_data: bool = False) -> dict[str, str]:
    """The children's environment: localhost-only discovery (a demo must not publish onto a robot's graph),
    an own ROS domain unless one is set, unbuffered logs (readiness is read from them), and optionally Fast
    DDS's LARGE_DATA transports (shared memory + TCP; DESIGN.md: ~3-4x lower latency for large images)."""
    env = dict(os.environ)
    if large_data:
        env["FASTDDS_BUILTIN_TRANSPORTS"] = "LARGE_DATA"
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    env.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.update(RCUTILS_LOGGING_BUFFERED_STREAM="0", PYTHONUNBUFFERED="1")
    return env


def sage_ros_command(*args) -> list[str]:
    return [sys.executable, "-m", "sage_ros.cli", *map(str, args)]


def encoder_command(preset: str, bundle: Path, node_name: str, params: dict | None = None,
                    remaps: dict[str, str] | None = None) -> list[str]:
    """The encoder executable (`tinyvae_encoder` / `puzzle_encoder` console script, as `ros2 run` starts it)
    with ROS arguments. Floats must be written with a decimal point: the node rejects an int for a double."""
    executable = BIN / f"{preset}_encoder"
    command = [str(executable)] if executable.exists() else [
        sys.executable, "-c", f"import sys; from sage_ros.ros.encoder_node import main; sys.exit(main(sys.argv, {preset!r}))"]
    command += ["--ros-args", "-r", f"__node:={node_name}", "-p", f"bundle:={bundle}"]
    for key, value in (params or {}).items():
        text = f"[{','.join(value)}]" if isinstance(value, (list, tuple)) else (
            str(value).lower() if isinstance(value, bool) else repr(value) if isinstance(value, float) else str(value))
        command += ["-p", f"{key}:={text}"]
    for old, new in (remaps or {}).items():
        command += ["-r", f"{old}:={new}"]
    return command


# --- models ----------------------------------------------------------------------------------------------------

@dataclass
class DemoModels:
    tinyvae: dict  # precision -> Bundle, same architecture and latent size
    puzzle: object | None  # Bundle or None
    found: list = field(default_factory=list)  # every valid bundle in the directory (for the size table)


def is_untrained(bundle) -> bool:
    note = json.dumps(bundle.meta.get("metrics", {})).lower()
    return UNTRAINED_MARK in bundle.name.lower() or UNTRAINED_MARK in note


def find_models(models_dir: Path) -> DemoModels:
    """The bundles the demo runs, found by their bundle.json (names are free): the TinyVAE latent size with the
    most of fp32 / int8 / int4 (largest latent on a tie), and one VisionPuzzleVAE (fp32 preferred)."""
    from sage_ros.runtime.bundle import BundleError, load_bundle

    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise DemoError(f"models directory {models_dir} does not exist: ship the trained bundles there, or pass "
                        "--models DIR (e.g. untrained test bundles: python test/demo_helpers.py /tmp/demo_models)")
    bundles = []
    for meta_path in sorted(models_dir.glob("*/bundle.json")):
        try:
            bundles.append(load_bundle(meta_path.parent))
        except BundleError as err:
            print(f"sage-ros demo: skipping {meta_path.parent}: {err}", file=sys.stderr)
    by_size: dict[tuple, dict] = {}
    for bundle in bundles:
        if bundle.architecture == "TinyVAE" and bundle.precision in TINYVAE_PRECISIONS:
            by_size.setdefault(bundle.latent_shape, {}).setdefault(bundle.precision, bundle)
    if not by_size:
        raise DemoError(f"no TinyVAE bundle (fp32 / int8 / int4) under {models_dir}; found "
                        f"{[b.name for b in bundles] or 'no valid bundles'}. Pass --models DIR (untrained test bundles for "
                        "the plumbing: python test/demo_helpers.py /tmp/demo_models)")
    tinyvae = max(by_size.items(), key=lambda item: (len(item[1]), "fp32" in item[1], item[0]))[1]
    puzzles = sorted((b for b in bundles if b.is_vq), key=lambda b: (b.precision != "fp32", b.name))
    return DemoModels({p: tinyvae[p] for p in TINYVAE_PRECISIONS if p in tinyvae}, puzzles[0] if puzzles else None,
                      bundles)


def size_table(bundles: list) -> list[dict]:
    """Every bundle's real ONNX bytes, and the ratio to the fp32 bundle of the same architecture and latent."""
    fp32 = {(b.architecture, b.latent_shape): bundle_bytes(b)["onnx_total"] for b in bundles if b.precision == "fp32"}
    rows = []
    for bundle in sorted(bundles, key=lambda b: (b.architecture, b.latent_shape, b.name)):
        sizes = bundle_bytes(bundle)
        reference = fp32.get((bundle.architecture, bundle.latent_shape))
        rows.append({"model": bundle.name, "architecture": bundle.architecture, "precision": bundle.precision,
                     "latent_shape": list(bundle.latent_shape), **sizes,
                     "onnx_ratio_vs_fp32": round(reference / sizes["onnx_total"], 2) if reference else None})
    return rows


def default_models_dir() -> Path:
    """Where the encoder node looks for bundles by name (installed share/, then the checkout): the first that
    holds any bundle, else the checkout's models/ (so the error names the directory a user expects)."""
    dirs = []
    try:
        from ament_index_python.packages import get_package_share_directory

        dirs.append(Path(get_package_share_directory("sage_ros")) / "models")
    except (ImportError, LookupError, OSError):  # not installed / no AMENT_PREFIX_PATH (a pip venv)
        pass
    dirs.append(REPO / "models")
    return next((d for d in dirs if any(d.glob("*/bundle.json"))), REPO / "models")


@dataclass
class EncoderRun:
    """One encoder node of a replay: which bundle, which node name, where its output goes."""
    node_name: str
    preset: str  # "tinyvae" | "puzzle"
    bundle: object  # runtime Bundle
    output_topic: str

    @property
    def default_output(self) -> str:
        return RAW_TOPIC.rsplit("/", 1)[0] + ("/puzzle" if self.preset == "puzzle" else "/latent")


def demo_encoders(models: DemoModels) -> list[EncoderRun]:
    runs = [EncoderRun(f"tinyvae_{p}", "tinyvae", b, f"/camera/tinyvae_{p}/latent") for p, b in models.tinyvae.items()]
    if models.puzzle is not None:
        runs.append(EncoderRun(f"puzzle_{models.puzzle.precision}", "puzzle", models.puzzle, "/camera/puzzle"))
    return runs


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
    with GraphProbe(int(group.env["ROS_DOMAIN_ID"])) as probe:
        probe.wait_for_subscriber(RECORDER_NODE, topics[1:], options.ready_timeout, recorder)
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


# --- reading the recording back --------------------------------------------------------------------------------

@dataclass
class Recording:
    """What the recorder wrote, keyed by header stamp (ns). Log times are the recorder's receive times."""
    input_log_ns: dict = field(default_factory=dict)  # stamp -> log time of the source frame
    input_frame_ids: dict = field(default_factory=dict)  # stamp -> frame_id
    outputs: dict = field(default_factory=dict)  # topic -> list of (stamp, frame_id, log time, {"mu",..}|{"codes"})
    diagnostics: dict = field(default_factory=dict)  # status name -> key/values of its last message
    bag: Path | None = None
    input_topic: str = RAW_TOPIC


def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def read_recording(bag: Path, output_topics: list[str], input_topic: str = RAW_TOPIC) -> Recording:
    from sage_ros.bag.common import open_reader, typestore
    from sage_ros.runtime.messages import image_to_output

    store = typestore()
    recording = Recording(outputs={topic: [] for topic in output_topics}, bag=Path(bag), input_topic=input_topic)
    reader = open_reader(bag)
    try:
        for conn, log_ns, data in reader.messages():
            if conn.topic == input_topic:
                header = _deserialize_header(data)
                recording.input_log_ns[header[0]] = log_ns
                recording.input_frame_ids[header[0]] = header[1]
            elif conn.topic in recording.outputs:
                msg = store.deserialize_cdr(data, conn.msgtype)
                recording.outputs[conn.topic].append((_stamp_ns(msg.header), msg.header.frame_id, log_ns,
                                                      image_to_output(msg)))
            elif conn.topic == DIAGNOSTICS_TOPIC:
                msg = store.deserialize_cdr(data, conn.msgtype)
                for status in msg.status:
                    recording.diagnostics[status.name] = {kv.key: kv.value for kv in status.values}
    finally:
        reader.close()
    return recording


def _deserialize_header(data) -> tuple[int, str]:
    """(stamp ns, frame_id) of a serialized sensor_msgs/Image without copying its 1.3 MB of pixels.

    Hand-written because rosbags deserializes the whole message; CDR layout of the leading Header:
    4-byte encapsulation, int32 sec, uint32 nanosec, uint32 length (incl. NUL) + frame_id bytes."""
    view = memoryview(data)
    order = "<" if view[1] == 1 else ">"  # encapsulation CDR_LE = 0x0001, CDR_BE = 0x0000
    sec, nanosec, length = np.frombuffer(view[4:16], dtype=np.dtype(f"{order}u4"))
    sec = int(np.int32(np.uint32(sec)))
    frame_id = bytes(view[16:16 + int(length) - 1]).decode()
    return sec * 1_000_000_000 + int(nanosec), frame_id


def read_input_frames(bag: Path, stamps: set[int], topic: str = RAW_TOPIC) -> dict[int, np.ndarray]:
    """Recorded input frames (uint8 RGB, full size) with these header stamps, from a raw or JPEG topic."""
    from sage_ros.bag.common import open_reader, typestore
    from sage_ros.runtime.image_codec import decode_compressed, image_msg_to_rgb8

    store, frames = typestore(), {}
    reader = open_reader(bag)
    try:
        connections = [c for c in reader.connections if c.topic == topic]
        for conn, _, data in reader.messages(connections=connections):
            if _deserialize_header(data)[0] in stamps:
                msg = store.deserialize_cdr(data, conn.msgtype)
                to_rgb = decode_compressed if conn.msgtype.endswith("CompressedImage") else image_msg_to_rgb8
                frames[_stamp_ns(msg.header)] = to_rgb(msg).copy()
    finally:
        reader.close()
    return frames


# --- summary ---------------------------------------------------------------------------------------------------

def _percentiles(values_ms: list[float]) -> dict:
    if not values_ms:
        return {"p50": None, "p90": None, "p99": None}
    p50, p90, p99 = np.percentile(values_ms, [50, 90, 99])
    return {"p50": round(float(p50), 2), "p90": round(float(p90), 2), "p99": round(float(p99), 2)}


def _rate_hz(log_times_ns: list[int]) -> float | None:
    if len(log_times_ns) < 2:
        return None
    span = (max(log_times_ns) - min(log_times_ns)) / 1e9
    return round((len(log_times_ns) - 1) / span, 2) if span > 0 else None


def _diagnostics_of(recording: Recording, node_name: str) -> dict:
    for name, values in recording.diagnostics.items():
        if name.split(":")[0].rsplit("/", 1)[-1] == node_name:
            return values
    return {}


def bundle_bytes(bundle) -> dict:
    """Real file sizes: the two ONNX graphs (what a robot loads) and every other file of the bundle."""
    files = {path.name: path.stat().st_size for path in sorted(bundle.path.iterdir()) if path.is_file()}
    onnx = files.get(bundle.encoder_path.name, 0) + files.get(bundle.decoder_path.name, 0)
    return {"encoder_onnx": files.get(bundle.encoder_path.name, 0), "decoder_onnx": files.get(bundle.decoder_path.name, 0),
            "onnx_total": onnx, "all_files": sum(files.values())}


def summarize(recording: Recording, encoders: list[EncoderRun], result: ReplayResult, options: ReplayOptions) -> dict:
    fp32_onnx = next((bundle_bytes(e.bundle)["onnx_total"] for e in encoders
                      if e.preset == "tinyvae" and e.bundle.precision == "fp32"), None)
    rows = []
    for enc in encoders:
        outputs = recording.outputs[enc.output_topic]
        latency = [(log - recording.input_log_ns[stamp]) / 1e6 for stamp, _, log, _ in outputs
                   if stamp in recording.input_log_ns]
        diag = _diagnostics_of(recording, enc.node_name)
        sizes = bundle_bytes(enc.bundle)
        rows.append({
            "node": enc.node_name, "topic": enc.output_topic, "model": enc.bundle.name,
            "architecture": enc.bundle.architecture, "precision": enc.bundle.precision,
            "latent_shape": list(enc.bundle.latent_shape), "untrained": is_untrained(enc.bundle),
            "frames_in": int(diag.get("frames_received", -1)), "frames_out": len(outputs),
            "dropped": int(diag.get("dropped_frames", -1)), "errors": int(diag.get("errors", -1)),
            "output_rate_hz": _rate_hz([log for _, _, log, _ in outputs]),
            "latency_ms": _percentiles(latency),
            "node_latency_p50_ms": _float(diag.get("latency_p50_ms")),
            "inference_p50_ms": _float(diag.get("inference_p50_ms")), "backend": diag.get("backend", "?"),
            "bytes": sizes,
            "onnx_ratio_vs_fp32": round(fp32_onnx / sizes["onnx_total"], 2)
            if fp32_onnx and enc.preset == "tinyvae" else None,
        })
    return {"frames_played": result.frames_played, "frames_recorded_input": len(recording.input_log_ns),
            "input_rate_hz": _rate_hz(list(recording.input_log_ns.values())), "rate": options.rate,
            "start_offset_s": options.start_offset, "input_topic": options.input_topic, "qos": options.qos,
            "bag": str(result.bag),
            "dds_transports": os.environ.get("FASTDDS_BUILTIN_TRANSPORTS", "default"),
            "wall_s": {k: round(v, 2) for k, v in result.wall_s.items()}, "encoders": rows}


def _float(text) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return None if value != value else value  # NaN (no samples) -> None


def _fmt(value, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def summary_text(summary: dict) -> str:
    lines = [f"input {summary['input_topic']}: {summary['frames_played']} frames played ({summary['frames_recorded_input']} recorded) at "
             f"{_fmt(summary['input_rate_hz'])} Hz (rate {summary['rate']}, {summary['qos']} QoS, "
             f"{summary['dds_transports']} DDS transports)",
             f"{'node':<15} {'precision':<9} {'in':>4} {'out':>4} {'drop':>4} {'out Hz':>6} "
             f"{'lat p50':>7} {'p90':>6} {'p99':>6} {'infer':>6}  {'onnx bytes':>10} {'x fp32':>6}  model"]
    for row in summary["encoders"]:
        lat = row["latency_ms"]
        lines.append(f"{row['node']:<15} {row['precision']:<9} {row['frames_in']:>4} {row['frames_out']:>4} "
                     f"{row['dropped']:>4} {_fmt(row['output_rate_hz']):>6} {_fmt(lat['p50']):>7} "
                     f"{_fmt(lat['p90']):>6} {_fmt(lat['p99']):>6} {_fmt(row['inference_p50_ms'], '.2f'):>6}  "
                     f"{row['bytes']['onnx_total']:>10,} {_fmt(row['onnx_ratio_vs_fp32'], '.2f'):>6}  {row['model']}"
                     + ("  [UNTRAINED]" if row["untrained"] else ""))
    lines.append("latency = recorder receive time of the latent - recorder receive time of its source frame "
                 "(matched by header stamp), ms; infer = node's backend call p50, ms; "
                 "onnx bytes = encoder.onnx + decoder.onnx on disk")
    if summary.get("bundles"):
        lines.append("model files, bytes on disk (x fp32 = fp32 ONNX bytes / these; all files = the whole bundle):")
        lines.append(f"  {'model':<28} {'arch':<15} {'prec':<5} {'encoder.onnx':>12} {'decoder.onnx':>12} "
                     f"{'x fp32':>6} {'all files':>10}")
        for row in summary["bundles"]:
            lines.append(f"  {row['model']:<28} {row['architecture']:<15} {row['precision']:<5} "
                         f"{row['encoder_onnx']:>12,} {row['decoder_onnx']:>12,} {_fmt(row['onnx_ratio_vs_fp32'], '.2f'):>6} "
                         f"{row['all_files']:>10,}")
    if any(row["untrained"] for row in summary["encoders"]):
        lines.append("WARNING: untrained (seeded) bundles: the reconstructions show plumbing, not model quality")
    return "\n".join(lines)


# --- contact sheet ---------------------------------------------------------------------------------------------

def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    # 8-bit PSNR of two uint8 images; a one-liner, not worth importing compression.metrics (torch) here.
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def _to_uint8_hwc(image_chw: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    lo, hi = value_range
    return np.clip((image_chw.transpose(1, 2, 0) - lo) / (hi - lo) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def pick_stamps(recording: Recording, encoders: list[EncoderRun], count: int) -> list[int]:
    """`count` stamps spread over the replay that every encoder produced an output for."""
    common = set(recording.input_log_ns)
    for enc in encoders:
        common &= {stamp for stamp, *_ in recording.outputs[enc.output_topic]}
    ordered = sorted(common)
    if len(ordered) <= count:
        return ordered
    return [ordered[int(i)] for i in np.linspace(0, len(ordered) - 1, count).round()]


def contact_sheet(path: Path, recording: Recording, encoders: list[EncoderRun], rows: int = 5) -> int:
    """input | model input | TinyVAE fp32 / int8 / int4 reconstructions (PSNR vs model input) | puzzle codes |
    puzzle decoded, for `rows` frames; returns the number of frames shown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from sage_ros.runtime.backends import make_backend
    from sage_ros.runtime.preprocess import Preprocessor

    stamps = pick_stamps(recording, encoders, rows)
    if not stamps:
        raise DemoError("no frame was encoded by every encoder; nothing to show (see the summary)")
    frames = read_input_frames(recording.bag, set(stamps), recording.input_topic)
    outputs = {enc.output_topic: {stamp: out for stamp, _, _, out in recording.outputs[enc.output_topic]}
               for enc in encoders}
    tinyvae = [e for e in encoders if e.preset == "tinyvae"]
    puzzle = next((e for e in encoders if e.preset == "puzzle"), None)
    columns = ["input frame", f"model input {tinyvae[0].bundle.input_size[0]}px" if tinyvae else None,
               *[f"TinyVAE {e.bundle.precision}" for e in tinyvae],
               *(["puzzle codes 30x30", "puzzle decoded"] if puzzle else [])]
    columns = [c for c in columns if c]
    fig, axes = plt.subplots(len(stamps), len(columns), figsize=(1.9 * len(columns), 1.75 * len(stamps) + 0.6),
                             squeeze=False)
    backends = {e.node_name: make_backend(e.bundle, "onnxruntime", "cpu") for e in encoders}
    try:
        for r, stamp in enumerate(stamps):
            cells = [(frames[stamp], f"t={(stamp - min(recording.input_log_ns)) / 1e9:.1f} s")]
            if tinyvae:
                pre = Preprocessor.from_bundle(tinyvae[0].bundle, "resize")
                model_input = _to_uint8_hwc(pre([frames[stamp]])[0], tinyvae[0].bundle.input_range)
                cells.append((model_input, "area resize"))
                for enc in tinyvae:
                    mu = outputs[enc.output_topic][stamp]["mu"][None].astype(np.float32)
                    recon = _to_uint8_hwc(backends[enc.node_name].decode(mu)[0], enc.bundle.input_range)
                    cells.append((recon, f"PSNR {_psnr(recon, model_input):.2f} dB"))
            if puzzle:
                codes = outputs[puzzle.output_topic][stamp]["codes"]
                cells.append((codes, f"{len(np.unique(codes))} codes used"))
                decoded = backends[puzzle.node_name].decode(codes[None].astype(np.int64))[0]
                cells.append((_to_uint8_hwc(decoded, puzzle.bundle.input_range), ""))
            for c, (image, label) in enumerate(cells):
                ax = axes[r][c]
                if image.ndim == 2:  # a code grid: one colour per code 0..9
                    ax.imshow(image, cmap="tab10", vmin=-0.5, vmax=9.5, interpolation="nearest")
                else:
                    ax.imshow(image, interpolation="nearest" if image.shape[0] <= 64 else "antialiased")
                ax.set_xticks([]), ax.set_yticks([])
                ax.set_xlabel(label, fontsize=7)
                if r == 0:
                    ax.set_title(columns[c], fontsize=8)
    finally:
        for backend in backends.values():
            backend.close()
    untrained = any(is_untrained(e.bundle) for e in encoders)
    models = ", ".join(sorted({e.bundle.name for e in encoders}))
    fig.suptitle(f"sage_ros demo: vtest.avi camera frames -> encoder nodes over DDS -> recorded latents decoded\n"
                 f"{'UNTRAINED (seeded) models - plumbing only. ' if untrained else ''}{models}", fontsize=8)
    fig.tight_layout()
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    plt.close(fig)
    # An adaptive 256-colour palette keeps the committed picture well under 500 KB (photos compress poorly
    # as truecolour PNG); the small tiles lose nothing visible.
    picture = Image.fromarray(rgba[..., :3].copy()).quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    with atomic_path(path, suffix=".png") as tmp:
        picture.save(tmp, format="PNG", optimize=True)
    return len(stamps)


# --- the verb --------------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output directory (default demo_out)")
    parser.add_argument("--models", type=Path, default=None,
                        help="directory of model bundles (default: the shipped models: share/sage_ros/models of an "
                             "installed package, else the checkout's models/)")
    parser.add_argument("--bag", type=Path, default=None, help="input bag (default: the bundled vtest bag)")
    parser.add_argument("--rate", type=float, default=1.0, help="playback rate (default 1.0 = 10 fps)")
    parser.add_argument("--start-offset", type=float, default=0.0, metavar="S",
                        help="start S seconds into the 20 s raw slice (shorter demo)")
    parser.add_argument("--transport", default="raw", choices=("raw", "compressed"),
                        help="raw: /camera/image_raw (20 s, rgb8); compressed: /camera/image_raw/compressed (the "
                             "whole 79.5 s video as JPEG; use --start-offset, e.g. 60) with input_transport:=compressed")
    parser.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "tensorrt", "torch"))
    parser.add_argument("--rows", type=int, default=5, help="frames on the contact sheet (default 5)")
    parser.add_argument("--domain-id", type=int, default=None,
                        help="ROS_DOMAIN_ID for the demo's processes (default: $ROS_DOMAIN_ID, else one of its own)")
    parser.add_argument("--large-data", action="store_true",
                        help="run every process with FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA")
    parser.add_argument("--update-docs", action="store_true",
                        help="also copy the contact sheet to docs/demo_contact_sheet.png")


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM takes the same clean path as Ctrl-C: children stopped, bag closed


def run(args) -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    try:
        return _run(args, started)
    except DemoError as err:
        print(f"sage-ros demo: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sage-ros demo: interrupted; every process it started has been stopped", file=sys.stderr)
        return 130


def _run(args, started: float) -> int:
    from sage_ros.data import DataNotFoundError, vtest_bag_path

    try:
        bag_in = args.bag or vtest_bag_path()
    except DataNotFoundError as err:
        raise DemoError(str(err)) from None
    if not Path(bag_in).exists():
        raise DemoError(f"bag {bag_in} not found")
    models = find_models(args.models or default_models_dir())
    encoders = demo_encoders(models)
    missing = [p for p in TINYVAE_PRECISIONS if p not in models.tinyvae]
    if missing or models.puzzle is None:
        print(f"sage-ros demo: note: no TinyVAE {missing} bundle(s)" * bool(missing)
              + " / no VisionPuzzleVAE bundle" * (models.puzzle is None) + "; running the rest")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bag_out = out / "replay_bag"
    if bag_out.exists():  # our own output of an earlier run (a recorder refuses to overwrite a bag)
        shutil.rmtree(bag_out)
    options = ReplayOptions(rate=args.rate, start_offset=args.start_offset, backend=args.backend,
                            transport=args.transport)
    env = child_env(args.domain_id, args.large_data)
    for key in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_BUILTIN_TRANSPORTS"):  # our graph probe: same DDS set-up
        if key in env:
            os.environ[key] = env[key]
    with ProcessGroup(out / "logs", env) as group:
        result = run_replay(Path(bag_in), bag_out, encoders, group, options,
                            on_phase=lambda text: print(f"[{time.monotonic() - started:5.1f} s] {text}", flush=True))
    print(f"[{time.monotonic() - started:5.1f} s] replay done; reading {bag_out}", flush=True)
    recording = read_recording(bag_out, [e.output_topic for e in encoders], options.input_topic)
    summary = summarize(recording, encoders, result, options)
    summary["bundles"] = size_table(models.found)
    sheet = out / "contact_sheet.png"
    summary["contact_sheet_frames"] = contact_sheet(sheet, recording, encoders, rows=args.rows)
    summary["contact_sheet"] = str(sheet)
    summary["wall_s"]["total"] = round(time.monotonic() - started, 2)
    text = summary_text(summary) + f"\ncontact sheet: {sheet}; bag: {bag_out}; wall time {summary['wall_s']['total']:.1f} s"
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "summary.txt", text + "\n")
    if args.update_docs:
        with atomic_path(REPO / "docs" / "demo_contact_sheet.png", suffix=".png") as tmp:
            shutil.copyfile(sheet, tmp)
        print(f"copied the contact sheet to {REPO / 'docs' / 'demo_contact_sheet.png'}")
    print(text, flush=True)
    return 0
