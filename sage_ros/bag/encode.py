"""`sage-ros bag encode`: encode every frame of an image topic in a bag into latent / puzzle topics, offline.

No DDS and no rclpy: frames are read with rosbags, pre-processed and encoded in batches by a runtime backend
(sage_ros.runtime), and written as the same sensor_msgs/Image the encoder node publishes (shared helper
sage_ros.runtime.messages): 32FC1 2 x L latents or mono8 30 x 30 puzzles, with the source frame's header. Each
output message keeps its source frame's bag timestamp, so the two bags line up. Output: a new mcap bag, readable
by rosbags and by the mcap library's ROS 2 reader. Beside the output topic, `<out-topic>/info` holds the model's
identity (runtime/latent_info.py; one std_msgs/String at the bag's start, offered reliable + transient-local as the
node latches it), so the bag says which model made its latents and `bag play` latches it again. And, unless
--no-telemetry, `<out-topic>/telemetry` beside each output message, as the node's `publish_telemetry` makes it
(runtime/telemetry.py; total_ms counts from the frame's read out of the bag; the puzzle's recon fields need
--telemetry-decode).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from sage_ros.atomic import os_error_text
from sage_ros.bag.common import BagError, atomic_bag_writer, bag_qos, open_reader, select_connections, typestore
# the encoder node's own frame functions (no rclpy in that module), so offline and live encodings agree
from sage_ros.ros.encoding import decode_min_size, encode_prepared, frame_from_message
from sage_ros.runtime.backends.base import BackendError
from sage_ros.runtime.bundle import BundleError, load_bundle
from sage_ros.runtime.image_codec import ImageConversionError, ImageFields
from sage_ros.runtime.latent_info import info_json, model_info
from sage_ros.runtime.messages import output_to_image, output_topic_kind
from sage_ros.runtime.preprocess import CROP_MODES, Preprocessor
from sage_ros.runtime.settings import BACKENDS
from sage_ros.runtime.telemetry import batch_telemetry, bundle_fields, source_hw, telemetry_images, telemetry_topic

IMAGE = "sensor_msgs/msg/Image"
STRING = "std_msgs/msg/String"
COMPRESSED = "sensor_msgs/msg/CompressedImage"


@dataclass
class EncodeSummary:
    in_topic: str
    out_topic: str
    frames: int = 0  # messages written
    bad_frames: int = 0  # messages that could not be decoded (malformed CDR or image: skipped, counted)
    read: int = 0  # messages read from the input topic
    last_error: str = ""  # why the last bad frame was skipped
    wall_s: float = 0.0
    backend: str = ""

    def line(self) -> str:
        rate = self.frames / self.wall_s if self.wall_s else 0.0
        return (f"encoded {self.frames} frames of {self.in_topic} -> {self.out_topic} in {self.wall_s:.2f} s "
                f"({rate:.1f} frames/s, backend {self.backend}); {self.bad_frames} undecodable frames skipped")


def pick_image_topic(reader, topic: str | None):
    """The connection to encode: `topic`, or the bag's only / first raw Image topic (else CompressedImage)."""
    if topic:
        connections = select_connections(reader, [topic])
    else:
        connections = [c for c in reader.connections if c.msgtype == IMAGE] or \
                      [c for c in reader.connections if c.msgtype == COMPRESSED]
        if not connections:
            raise BagError(f"bag has no sensor_msgs Image or CompressedImage topic: {sorted(reader.topics)}")
        connections = [c for c in connections if c.topic == connections[0].topic]
    if connections[0].msgtype not in (IMAGE, COMPRESSED):
        raise BagError(f"topic {connections[0].topic} is {connections[0].msgtype}, not an image topic")
    return connections


def default_output_topic(in_topic: str, kind: str) -> str:
    """/camera/image_raw (or /camera/image_raw/compressed) -> /camera/latent: where a node in /camera publishes."""
    parts = [p for p in in_topic.split("/") if p]
    if parts and parts[-1] == "compressed":
        parts = parts[:-1]
    return "/" + "/".join(parts[:-1] + [kind])


class FrameReader:
    """Bag message bytes -> (header, H x W x 3 uint8 RGB) by the encoder node's own function, so offline and live
    frames are identical (reduced JPEG decode included)."""

    def __init__(self, msgtype: str, min_size: int | None):
        self.store = typestore()
        self.msgtype = msgtype
        self.min_size = min_size

    def __call__(self, data: bytes):
        try:
            msg = self.store.deserialize_cdr(data, self.msgtype)
        except Exception as exc:  # noqa: BLE001 - hostile bytes raise SerdeError, IndexError, UnicodeDecodeError ...
            raise ImageConversionError(f"malformed {self.msgtype} CDR payload of {len(data)} bytes "
                                       f"({type(exc).__name__}: {exc})") from None
        try:
            frame = frame_from_message(msg, compressed=self.msgtype == COMPRESSED, min_size=self.min_size)
        except ImageConversionError:
            raise
        except Exception as exc:  # noqa: BLE001 - fields that deserialise but make no image: one bad frame, not a crash
            raise ImageConversionError(f"unusable {self.msgtype} ({type(exc).__name__}: {exc})") from None
        return msg.header, frame


class BagEncoder:
    """Reads IN, encodes with a backend, writes OUT. Construct, then `encode()`; `close()` frees the backend."""

    def __init__(self, bag_in, model, *, topic=None, out_topic=None, backend="auto", device="cpu", batch=16,
                 crop="resize", telemetry=True, telemetry_decode=False):
        if batch < 1:
            raise BagError(f"--batch must be >= 1, got {batch}")
        from sage_ros.runtime.backends import make_backend  # here: keeps `--help` fast

        self.reader = open_reader(bag_in)
        self.connections = pick_image_topic(self.reader, topic)
        self.bundle = load_bundle(model)
        self.backend = make_backend(self.bundle, backend, device=device)
        self.preprocess = Preprocessor.from_bundle(self.bundle, crop)
        self.frames = FrameReader(self.connections[0].msgtype, decode_min_size(self.bundle, crop))
        self.store = self.frames.store
        self.batch = batch
        self.crop = crop
        self.telemetry, self.telemetry_decode = telemetry, telemetry_decode
        in_topic = self.connections[0].topic
        out_topic = out_topic or default_output_topic(in_topic, output_topic_kind(self.bundle.encoder_outputs))
        self.summary = EncodeSummary(in_topic, out_topic, backend=self.backend.name)

    def encode(self, out, progress: bool = True) -> EncodeSummary:
        start = time.monotonic()
        total = sum(c.msgcount for c in self.connections)
        with atomic_bag_writer(out) as writer, tqdm(total=total, unit="frame", disable=not progress,
                                                    desc=f"encode {self.summary.in_topic}") as bar:
            # reliable, depth 10: the QoS the encoder node offers on latent / puzzle topics
            connection = writer.add_connection(self.summary.out_topic, IMAGE, typestore=self.store,
                                               offered_qos_profiles=[bag_qos(reliable=True, depth=10)])
            self.telemetry_connection = writer.add_connection(  # the node's telemetry QoS: that of the latents
                telemetry_topic(self.summary.out_topic), IMAGE, typestore=self.store,
                offered_qos_profiles=[bag_qos(reliable=True, depth=10)]) if self.telemetry else None
            pending = []  # (bag timestamp, header, frame)
            for _, stamp_ns, data in self.reader.messages(connections=self.connections):
                if self.summary.read == 0:
                    self._write_info(writer, stamp_ns)
                self.summary.read += 1
                try:
                    pending.append((stamp_ns, *self.frames(data), data, time.monotonic()))
                except ImageConversionError as exc:
                    self.summary.bad_frames += 1
                    self.summary.last_error = str(exc)
                    tqdm.write(f"skipping undecodable frame at {stamp_ns}: {exc}", file=sys.stderr)
                if len(pending) == self.batch:
                    self._flush(pending, writer, connection, bar)
            self._flush(pending, writer, connection, bar)
            self._check_not_empty()  # inside the writer: an error leaves no output bag
        self.summary.wall_s = time.monotonic() - start
        return self.summary

    def _check_not_empty(self) -> None:
        """0 latents is never success: say whether the topic was empty or every frame was undecodable."""
        if self.summary.frames:
            return
        if not self.summary.read:
            raise BagError(f"topic {self.summary.in_topic} holds no messages: nothing to encode")
        raise BagError(f"encoded 0 frames: all {self.summary.read} messages of {self.summary.in_topic} were "
                       f"undecodable (last: {self.summary.last_error})")

    def _write_info(self, writer, first_stamp_ns: int) -> None:
        """`<out_topic>/info` once, at the bag's first timestamp (or the first frame's, if earlier or the bag
        declares none): before every latent, as the node publishes it."""
        info = writer.add_connection(self.summary.out_topic + "/info", STRING, typestore=self.store,
                                     offered_qos_profiles=[bag_qos(reliable=True, depth=1, transient_local=True)])
        text = info_json(model_info(self.bundle, self.crop))
        stamp = min(self.reader.start_time, first_stamp_ns)
        writer.write(info, stamp, self.store.serialize_cdr(self.store.types[STRING](data=text), STRING))

    def _flush(self, pending: list, writer, connection, bar) -> None:
        if not pending:
            return
        frames = [frame for _, _, frame, *_ in pending]
        started = time.perf_counter()
        prepared, outputs = encode_prepared(self.backend, self.preprocess, frames, cameras=[0] * len(frames))
        encode_s = time.perf_counter() - started
        telemetry = self._telemetry(pending, prepared, outputs, encode_s) if self.telemetry else None
        for index, (stamp_ns, header, *_) in enumerate(pending):
            fields = output_to_image(outputs, index, header=header, msg=ImageFields(data=np.empty(0, np.uint8)))
            writer.write(connection, stamp_ns, self.store.serialize_cdr(self._to_rosbags(fields), IMAGE))
            if telemetry is not None:
                writer.write(self.telemetry_connection, stamp_ns,
                             self.store.serialize_cdr(self._to_rosbags(telemetry[index]), IMAGE))
        self.summary.frames += len(pending)
        bar.update(len(pending))
        pending.clear()

    def _telemetry(self, pending: list, prepared, outputs, encode_s: float) -> list:
        """The node's telemetry for one batch (runtime/telemetry.py); a JPEG's window in its declared size."""
        compressed = self.frames.msgtype == COMPRESSED
        sources = [source_hw(self.store.deserialize_cdr(data, self.frames.msgtype), compressed) if compressed
                   else None for _, _, _, data, _ in pending]
        rows = batch_telemetry(self.backend, prepared, outputs, frames_hw=[p[2].shape[:2] for p in pending],
                               sources_hw=sources, encode_s=encode_s, received=[p[4] for p in pending],
                               decode=not self.bundle.is_vq or self.telemetry_decode)
        return telemetry_images(rows, bundle_fields(self.bundle), [p[1] for p in pending],
                                msg_factory=lambda: ImageFields(data=np.empty(0, np.uint8)))

    def _to_rosbags(self, fields: ImageFields):
        return self.store.types[IMAGE](header=fields.header, height=fields.height, width=fields.width,
                                       encoding=fields.encoding, is_bigendian=fields.is_bigendian, step=fields.step,
                                       data=fields.data)

    def close(self) -> None:
        self.backend.close()
        self.reader.close()


def encode_bag(bag_in, out, model, **options) -> EncodeSummary:
    """Library entry point: `sage-ros bag encode` without argparse."""
    progress = options.pop("progress", False)
    encoder = BagEncoder(bag_in, model, **options)
    try:
        return encoder.encode(out, progress=progress)
    finally:
        encoder.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sage_ros.usage import bundle_dir, existing_path, renamed

    parser.add_argument("bag_in", metavar="IN", type=existing_path, help="input rosbag2 bag (sqlite3 or mcap)")
    parser.add_argument("out", metavar="OUT", help="output bag directory (mcap; must not exist)")
    parser.add_argument("--bundle", "--model", dest="model", required=True, metavar="BUNDLE", type=bundle_dir,
                        action=renamed("--model"), help="model bundle: a shipped name (tinyvae_l64_fp32), a bundle "
                                                        "directory or a file in one (--model: deprecated spelling)")
    parser.add_argument("--topic", default=None,
                        help="image topic: sensor_msgs/Image or .../compressed (default: the bag's first Image topic)")
    parser.add_argument("--out-topic", default=None,
                        help="output topic (default: <input namespace>/latent, or /puzzle for VisionPuzzleVAE)")
    parser.add_argument("--backend", default="auto", choices=BACKENDS)
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--batch", type=int, default=16, help="frames per backend call (default 16)")
    parser.add_argument("--crop-mode", "--crop", dest="crop", default="resize", choices=CROP_MODES,
                        action=renamed("--crop"),
                        help="how a frame becomes the model input, as the node's crop_mode (--crop: deprecated)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-telemetry", action="store_true",
                        help="do not write <out-topic>/telemetry (crop window, recon error, KL, trust, timings)")
    parser.add_argument("--telemetry-decode", action="store_true",
                        help="puzzle models: also decode each grid for telemetry's recon_mse / recon_psnr_db")


def run(args) -> int:
    try:
        summary = encode_bag(args.bag_in, args.out, args.model, topic=args.topic, out_topic=args.out_topic,
                             backend=args.backend, device=args.device, batch=args.batch, crop=args.crop,
                             telemetry=not args.no_telemetry, telemetry_decode=args.telemetry_decode,
                             progress=not args.no_progress)
    except (BagError, BundleError, BackendError, ImageConversionError, ValueError) as exc:
        print(f"sage-ros bag encode: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the input side (a write error is a BagWriteError): one line, no traceback
        print(f"sage-ros bag encode: error: {os_error_text(exc)}", file=sys.stderr)
        return 1
    print(summary.line(), flush=True)
    return 0
