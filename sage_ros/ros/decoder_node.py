"""The latent_decoder node: latents (or puzzle grids) + their latched `<topic>/info` in, rgb8 reconstructions out.

Meant for an operator machine (rviz / Foxglove), so the robot need not spend CPU on `publish_reconstruction`.
For each topic in `latent_topics` it subscribes `<topic>/info` (reliable, transient-local: a late start still gets
it) and `<topic>`; on each new info it finds the bundle that made the latents among the installed ones
(runtime/consumer.find_bundle: by encoder+decoder sha256, then decoder sha256, then, if `match_by_name`, by name)
and decodes every message with that bundle's decoder.onnx (runtime backends). Images are published on
`<parent>/reconstruction` (`<parent>/puzzle_reconstruction` for puzzles) with the latent's header.

/diagnostics says, per topic, which model it decodes with which bundle, and is ERROR when the bundle is unknown or
messages disagree with their info (wrong encoding / shape / values: counted, never decoded), WARN while no info has
arrived or when the bundle was matched by name only. A plain node, not a lifecycle one: it holds nothing until an
info arrives. Decoding runs in the subscription callback (one decoder call per message; a TinyVAE decode takes well
under a millisecond, a 224 px puzzle decode a few milliseconds); the subscription's depth bounds the backlog.
"""
from __future__ import annotations

import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Header, String

from sage_ros.ros import params as P
from sage_ros.ros.crop_overlay import OVERLAY_NAME, CropOverlay
from sage_ros.ros.graph_check import PublisherCheck, output_beside
from sage_ros.ros.info import info_qos, info_topic
from sage_ros.ros.qos import input_qos, output_qos
from sage_ros.runtime.backends import BackendError
from sage_ros.runtime.bundle import BundleError
from sage_ros.runtime.consumer import (BundleNotFound, InfoError, InfoMismatch, LatentDecoder, LatentInfo, ModelGate,
                                       shipped_model_dirs)
from sage_ros.runtime.image_codec import numpy_to_image

THROTTLE_S = 5.0
COUNTERS = ("received", "published", "no_info", "mismatched", "decode_errors", "publish_errors", "infos",
            "held", "released", "dropped_unknown_model")
HOLD = 30  # default of the hold_latents parameter: ~1 s of a 30 Hz camera


@dataclass
class Stream:
    """One decoded topic: its info, decoder, output publisher and counters."""
    latent_topic: str
    info: LatentInfo | None = None
    decoder: LatentDecoder | None = None
    problem: str = ""          # why this topic is not decoding (unknown bundle, bad info), "" when fine
    last_mismatch: str = ""
    publisher: Any = None
    output_topic: str = ""
    counts: Counter = field(default_factory=Counter)
    overlay: Any = None  # CropOverlay when frame_topics names this topic's camera
    gate: ModelGate = field(default_factory=lambda: ModelGate(hold=HOLD))  # decodes only with the maker's model

    def sync_gate_counts(self) -> None:
        g = self.gate.counts
        self.counts["held"], self.counts["released"] = g["held"], g["released"]
        self.counts["dropped_unknown_model"] = g["dropped"] + g["unknown"]

    def values(self) -> dict[str, str]:
        prefix = self.latent_topic
        out = {f"{prefix}: {name}": str(self.counts[name]) for name in COUNTERS}
        out[f"{prefix}: model"] = self.info.summary() if self.info else "(no info yet)"
        if self.decoder is not None:
            described = self.decoder.describe()
            out[f"{prefix}: bundle"] = described["bundle"]
            out[f"{prefix}: matched_by"] = described["matched_by"]
            out[f"{prefix}: backend"] = f"{described['backend']} {described['device']}"
            out[f"{prefix}: output"] = self.output_topic
        if self.overlay is not None:
            out[f"{prefix}: overlay"] = (f"{self.overlay.output_topic}: {self.overlay.counts['published']} published, "
                                         f"{self.overlay.counts['errors']} errors {self.overlay.last_error}").strip()
        if self.problem:
            out[f"{prefix}: problem"] = self.problem
        if self.last_mismatch:
            out[f"{prefix}: last_mismatch"] = self.last_mismatch
        return out


def stream_level(stream: Stream, new: Counter) -> tuple[int, str]:
    """(DiagnosticStatus level as int, message) for one topic given its counter increments `new` since the last
    report: ERROR for an unknown bundle / unusable info or disagreeing messages, WARN for no info yet or a bundle
    matched by name only, else OK."""
    topic = stream.latent_topic
    if stream.problem:
        return 2, f"{topic}: {stream.problem}"
    if new["mismatched"]:
        return 2, f"{topic}: {new['mismatched']} messages disagree with their info: {stream.last_mismatch}"
    if new["decode_errors"] or new["publish_errors"]:
        return 2, f"{topic}: decode/publish errors: {stream.last_mismatch}"
    if new["dropped_unknown_model"]:
        return 1, (f"{topic}: {new['dropped_unknown_model']} latents dropped, not decoded: which model made them could "
                   f"not be matched to an info ({stream.gate.last_problem})")
    if stream.info is None:
        return 1, f"{topic}: waiting for {info_topic(topic)} ({stream.counts['no_info']} latents without it)"
    if stream.decoder is not None and stream.decoder.matched_by == "name":
        return 1, (f"{topic}: decoding with {stream.decoder.bundle.name} matched by name only: its decoder.onnx "
                   "differs from the robot's; images may differ")
    return 0, f"{topic}: decoding {stream.info.model} ({new['published']} images in the last interval)"


class LatentDecoderNode(Node):
    def __init__(self, node_name: str = "latent_decoder", **node_kwargs):
        super().__init__(node_name, **node_kwargs)
        self.add_on_set_parameters_callback(lambda params: P.on_set_parameters(params, P.DECODER_SPECS))
        P.declare_parameters(self, params=P.DECODER_PARAMS)
        self._lock = threading.Lock()
        self.streams: list[Stream] = []
        self._previous: dict[str, Counter] = {}
        depth = self._param("qos_depth")
        latent_qos = input_qos(self._param("qos_reliability"), depth)
        frame_topics = list(self._param("frame_topics"))
        for index, topic in enumerate(self._param("latent_topics")):
            stream = Stream(topic, gate=ModelGate(hold=self._param("hold_latents")))
            if index < len(frame_topics) and frame_topics[index]:  # the crop window drawn on the full frame
                stream.overlay = CropOverlay(self, topic, frame_topics[index],
                                             output_beside(self, topic, OVERLAY_NAME), lambda s=stream: s.info,
                                             latent_qos)
            self.streams.append(stream)
            # beside the latent topic as remapped (`-r latent:=x` subscribes x/info)
            self.create_subscription(String, info_topic(self.resolve_topic_name(topic)), partial(self._on_info, stream),
                                     info_qos())
            self.create_subscription(Image, topic, partial(self._on_latent, stream), latent_qos)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(self._param("diagnostics_period"), self.publish_diagnostics)
        # a latent topic with no publisher and nothing received after a few seconds: a WARN naming it (and similar
        # topics that exist), not silence
        self._input_check = PublisherCheck(self, [(self.resolve_topic_name(s.latent_topic), "sensor_msgs/msg/Image")
                                                  for s in self.streams], what="latent")
        self.get_logger().info(f"decoding {[self.resolve_topic_name(s.latent_topic) for s in self.streams]} with "
                               f"bundles from {[str(d) for d in self.model_dirs()]}")

    def _param(self, name: str) -> Any:
        return P.coerce(name, self.get_parameter(name).value, P.DECODER_SPECS)

    def model_dirs(self) -> list[Path]:
        return [Path(d).expanduser() for d in self._param("model_dirs") if d] + shipped_model_dirs()

    # --- info: which model made the latents --------------------------------------------------------------------

    def _on_info(self, stream: Stream, msg: String) -> None:
        try:
            self._take_info(stream, msg)
        except Exception as err:  # noqa: BLE001 - one hostile message must never end the node
            self._set_problem(stream, f"info not usable ({type(err).__name__}: {err})")

    def _take_info(self, stream: Stream, msg: String) -> None:
        stream.counts["infos"] += 1
        try:
            info = LatentInfo.parse(msg.data)
        except InfoError as err:
            self._set_problem(stream, f"unusable info: {err}")
            return
        with self._lock:
            if stream.decoder is not None and stream.info is not None and stream.info.identity == info.identity:
                stream.info = info  # same model (a new crop mode, say): the decoder stays
                stream.decoder.info = info
                self._release(stream, stream.gate.set_info(info))
                return
        try:
            decoder = LatentDecoder(info, self.model_dirs(), backend=self._param("backend"),
                                    device=self._param("device"), allow_name=self._param("match_by_name"),
                                    **self._backend_options())
        except (BundleNotFound, BundleError, BackendError, InfoMismatch, ValueError, OSError, ImportError) as err:
            with self._lock:
                old, stream.decoder, stream.info = stream.decoder, None, info
                undecodable = stream.gate.set_info(info)  # this model's held latents: no bundle decodes them
                stream.gate.counts["dropped"] += len(undecodable)
                stream.sync_gate_counts()
            if old is not None:
                old.close()
            self._set_problem(stream, f"cannot decode {info.summary()}: {err}")
            return
        with self._lock:
            old, stream.decoder, stream.info, stream.problem = stream.decoder, decoder, info, ""
            self._ensure_publisher(stream)
            released = stream.gate.set_info(info)
        if old is not None:
            old.close()
        self.get_logger().info(f"'{stream.latent_topic}': {info.summary()} -> bundle {decoder.bundle.path} "
                               f"(matched by {decoder.matched_by}) -> '{stream.output_topic}'")
        self._release(stream, released)

    def _release(self, stream: Stream, released) -> None:
        """Latents held until their model's info arrived: decoded now, in arrival order."""
        for msg, latent in released:
            self._publish_image(stream, stream.decoder, msg, latent)
        stream.sync_gate_counts()

    def _backend_options(self) -> dict:
        backend, threads = self._param("backend"), self._param("intra_op_threads")
        if backend in ("auto", "onnxruntime"):
            return {"intra_op_threads": threads}
        return {"threads": threads} if backend == "torch" else {}

    def _ensure_publisher(self, stream: Stream) -> None:
        name = "puzzle_reconstruction" if stream.info.is_puzzle else "reconstruction"
        topic = output_beside(self, stream.latent_topic, name)  # beside the latent topic as resolved
        if topic != stream.output_topic:
            if stream.publisher is not None:
                self.destroy_publisher(stream.publisher)
            stream.publisher, stream.output_topic = self.create_publisher(Image, topic, output_qos(depth=2)), topic

    def _set_problem(self, stream: Stream, problem: str) -> None:
        stream.problem = problem
        self.get_logger().error(f"'{stream.latent_topic}': {problem}", throttle_duration_sec=THROTTLE_S)

    # --- latents -> images -------------------------------------------------------------------------------------

    def _on_latent(self, stream: Stream, msg: Image) -> None:
        stream.counts["received"] += 1
        try:
            with self._lock:
                decoder = stream.decoder
                if decoder is None and stream.info is None:
                    stream.counts["no_info"] += 1
                try:  # a latent another model made (its info not here yet) is held, never decoded with this one
                    latent = stream.gate.add(msg)
                except InfoMismatch as err:
                    stream.counts["mismatched"] += 1
                    stream.last_mismatch = str(err)
                    self.get_logger().error(f"'{stream.latent_topic}': {err}", throttle_duration_sec=THROTTLE_S)
                    return
                finally:
                    stream.sync_gate_counts()
            if latent is not None and decoder is not None:
                self._publish_image(stream, decoder, msg, latent)
        except Exception as err:  # noqa: BLE001 - one hostile message must never end the node
            stream.counts["decode_errors"] += 1
            stream.last_mismatch = f"{type(err).__name__}: {err}"

    def _publish_image(self, stream: Stream, decoder: LatentDecoder, msg: Image, latent) -> None:
        image = self.decode(stream, decoder, msg, latent)
        if image is None:
            return
        try:
            stream.publisher.publish(image)
            stream.counts["published"] += 1
            if stream.overlay is not None:
                stream.overlay.add_reconstruction(msg.header, image)
        except RuntimeError as err:  # rclpy's RCLError
            stream.counts["publish_errors"] += 1
            stream.last_mismatch = f"publish: {err}"

    def decode(self, stream: Stream, decoder: LatentDecoder, msg: Image, latent=None) -> Image | None:
        """One latent message (already read and checked into `latent`, else read here) -> an rgb8 Image with its
        header, or None (counted, logged) when it cannot be."""
        try:
            pixels = decoder.decode(latent) if latent is not None else decoder.decode_message(msg)
        except InfoMismatch as err:
            stream.counts["mismatched"] += 1
            stream.last_mismatch = str(err)
            self.get_logger().error(f"'{stream.latent_topic}': {err}", throttle_duration_sec=THROTTLE_S)
            return None
        except BackendError as err:
            stream.counts["decode_errors"] += 1
            stream.last_mismatch = f"decoder: {err}"
            self.get_logger().error(f"'{stream.latent_topic}': decoder failed: {err}", throttle_duration_sec=THROTTLE_S)
            return None
        return numpy_to_image(pixels, "rgb8", header=msg.header)

    # --- diagnostics -------------------------------------------------------------------------------------------

    def publish_diagnostics(self) -> None:
        received = {self.resolve_topic_name(s.latent_topic): s.counts["received"] > 0 for s in self.streams}
        missing = self._input_check.poll(lambda topic: received.get(topic, False))
        levels, messages, values = [], [], {}
        for stream in self.streams:
            previous = self._previous.get(stream.latent_topic, Counter())
            new = Counter({name: stream.counts[name] - previous[name] for name in COUNTERS})
            self._previous[stream.latent_topic] = Counter(stream.counts)
            level, message = stream_level(stream, new)
            resolved = self.resolve_topic_name(stream.latent_topic)
            if resolved in missing and stream.info is None:
                level, message = 1, (f"{stream.latent_topic}: nothing received and no publisher on {resolved}"
                                     + (f" (similar: {', '.join(missing[resolved])})" if missing[resolved] else ""))
            levels.append(level)
            messages.append(message)
            values.update(stream.values())
        status = DiagnosticStatus(level=bytes([max(levels, default=0)]), name=f"{self.get_fully_qualified_name()}: "
                                  "latent decoder", message="; ".join(messages), hardware_id=self._param("device"),
                                  values=[KeyValue(key=k, value=v) for k, v in values.items()])
        array = DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=[status])
        try:
            self._diagnostics_pub.publish(array)
        except RuntimeError as err:
            self.get_logger().warning(f"diagnostics publish failed: {err}", throttle_duration_sec=THROTTLE_S)

    def close(self) -> None:
        for stream in self.streams:
            if stream.decoder is not None:
                stream.decoder.close()
                stream.decoder = None


def main(args: list[str] | None = None) -> int:
    """Run the decoder until Ctrl-C / SIGTERM. Exit codes: 0 ok, 2 invalid parameters (or arguments rclpy
    cannot parse, e.g. a missing --params-file)."""
    from sage_ros.ros.run import run_node

    return run_node("latent_decoder", LatentDecoderNode, args, close=LatentDecoderNode.close)


if __name__ == "__main__":
    sys.exit(main())
