"""The subscriber's side of `latent` / `puzzle`: no rclpy, no torch (numpy, onnxruntime through runtime backends).

    info = LatentInfo.parse(info_msg.data)                    # the latched <output>/info
    latent = latent_from_message(msg, info)                   # -> Latent: .mu, .logvar (float32 L) or .codes (uint8)
    decoder = LatentDecoder(info)                             # finds the bundle by checksum among installed ones
    image = decoder.decode(latent)                            # H x W x 3 uint8 RGB at the model's input size
    pairs = StampPairer(); pairs.add_frame(stamp, frame); pairs.add_latent(stamp, latent)  # -> (frame, latent)
    made_by(msg, info)                                        # did this info's model make it? (its identity row)
    gate = ModelGate(); gate.set_info(info); gate.add(msg)    # holds latents whose model's info is still on its way
    values = telemetry_from_message(telemetry_msg, info)     # <output>/telemetry -> {"trust": .., "crop_x": ..}
    joiner = StampJoiner(("latent", "telemetry", "frame")); joiner.add("latent", stamp, latent)  # -> {side: item}

Messages are duck-typed (rclpy, rosbags or plain objects with the sensor_msgs/Image fields). Everything that does
not fit the info raises InfoMismatch with the reason, so a node can count and report it: ModelMismatch when another
model made the latent (its identity row carries another fingerprint), ModelUnknown when it does not say. A latent
is never decoded with a model other than the one that made it.
"""
from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .bundle import BUNDLE_FILE, Bundle, BundleError, load_bundle, read_bundle_meta
from .image_codec import ImageConversionError, image_to_numpy
from .latent_info import InfoError, LatentInfo
from .messages import MAX_ABS_LATENT, message_fingerprint, split_identity
from .postprocess import decoded_to_rgb8
from .telemetry import TelemetryError, telemetry_from_message, telemetry_topic

__all__ = ["InfoError", "InfoMismatch", "ModelMismatch", "ModelUnknown", "BundleNotFound", "Latent", "LatentInfo",
           "LatentDecoder", "ModelGate", "StampPairer", "latent_from_message", "made_by", "find_bundle",
           "shipped_model_dirs", "stamp_ns", "StampJoiner", "TelemetryError", "telemetry_from_message",
           "telemetry_topic"]


class InfoMismatch(ValueError):
    """A latent / puzzle message that does not fit its info (encoding, shape, size, values)."""


class ModelMismatch(InfoMismatch):
    """A well-formed message made by another model than the info's (its identity rows carry another fingerprint):
    usually the info of a model change has not arrived yet. Hold it (ModelGate) or drop it; never decode it."""

    def __init__(self, message: str, fingerprint: str):
        super().__init__(message)
        self.fingerprint = fingerprint


class ModelUnknown(InfoMismatch):
    """A message whose identity rows are missing or unreadable while its info says they are there: which model
    made it cannot be told, so it is not decoded."""


class BundleNotFound(LookupError):
    """No installed bundle has the info's checksums (nor, when allowed, its name)."""


@dataclass(frozen=True)
class Latent:
    """One message's content: mu + logvar (float32, shape (L,)) for `latent`, codes (uint8 grid) for `puzzle`."""
    mu: np.ndarray | None = None
    logvar: np.ndarray | None = None
    codes: np.ndarray | None = None

    @property
    def z(self) -> np.ndarray:
        """What the decoder takes: the codes, or mu (in eval every model decodes z = mu)."""
        return self.codes if self.codes is not None else self.mu


def stamp_ns(header: Any) -> int:
    """header.stamp -> integer nanoseconds (the key latents and their source frames share)."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def made_by(msg: Any, info: LatentInfo) -> bool:
    """True when the message's identity rows name `info`'s model (format_version 1 infos: when its shape fits,
    since those messages carry no identity)."""
    if info.fingerprint is None:
        return (getattr(msg, "encoding", None), int(getattr(msg, "height", -1)),
                int(getattr(msg, "width", -1))) == (info.encoding, *info.shape)
    return message_fingerprint(msg) == info.fingerprint


def latent_from_message(msg: Any, info: LatentInfo) -> Latent:
    """A `latent` / `puzzle` sensor_msgs/Image -> Latent (copies), checked against `info`: ModelMismatch when another
    model made it, ModelUnknown when it does not say which, InfoMismatch (their base) for anything else that does
    not fit."""
    if msg.encoding != info.encoding:
        raise InfoMismatch(f"message encoding {msg.encoding!r} but info ({info.model}) says {info.encoding!r}")
    shape = (int(msg.height), int(msg.width))
    if shape != info.shape and not (info.identity_rows and shape[1] == info.shape[1]):
        raise InfoMismatch(f"message is {msg.height} x {msg.width} but info ({info.model}) says "
                           f"{info.shape[0]} x {info.shape[1]}")
    try:
        array = image_to_numpy(msg, check_finite=not info.is_puzzle)
    except ImageConversionError as err:
        raise InfoMismatch(f"malformed {info.kind} message: {err}") from None
    if info.identity_rows:
        array, fingerprint = split_identity(array, info.kind)
        if fingerprint is None:
            raise ModelUnknown(f"{info.kind} message carries no model identity (a format 1 encoder, or damaged): "
                               f"cannot tell whether {info.model} made it; not decoded")
        if fingerprint != info.fingerprint:
            raise ModelMismatch(f"{info.kind} message was made by model {fingerprint}, not by {info.model} "
                                f"({info.fingerprint}) of the info: its info has not arrived (yet)", fingerprint)
        if array.shape != info.data_shape:
            raise InfoMismatch(f"message data is {array.shape[0]} x {array.shape[1]} but info ({info.model}) says "
                               f"{info.data_shape[0]} x {info.data_shape[1]}")
    if info.is_puzzle:
        codes = np.array(array, dtype=np.uint8)
        if codes.size and int(codes.max()) >= info["codes"]:
            raise InfoMismatch(f"code {int(codes.max())} outside 0..{info['codes'] - 1} of {info.model}")
        return Latent(codes=codes)
    largest = float(np.abs(array).max(initial=0.0))
    if largest > MAX_ABS_LATENT:
        raise InfoMismatch(f"implausible latent: |value| up to {largest:.3g} (> {MAX_ABS_LATENT:g})")
    return Latent(mu=np.array(array[0], dtype=np.float32), logvar=np.array(array[1], dtype=np.float32))


class ModelGate:
    """One latent topic's messages in, Latents out only for the model its current info describes.

    A message another model made (usually: that model's info is still on its way) is held, up to `hold` of them
    (oldest dropped first, counted), and released by `set_info` when that model's info arrives; a message that does
    not say which model made it is dropped and counted. Nothing is ever decoded with another model's decoder.
    `counts`: held, released, dropped (held ones evicted), unknown (no identity); malformed messages raise
    InfoMismatch from `add`, for the caller to count.

        gate = ModelGate()
        released = gate.set_info(LatentInfo.parse(info_msg.data))  # [(msg, Latent)] made by this model, held till now
        latent = gate.add(msg)                                       # a Latent, or None (held / dropped, counted)
    """

    def __init__(self, hold: int = 30):
        if hold < 0:
            raise ValueError(f"hold must be >= 0, got {hold}")
        self.hold = hold
        self.info: LatentInfo | None = None
        self._held: deque = deque()
        self.counts = {"held": 0, "released": 0, "dropped": 0, "unknown": 0}
        self.last_problem = ""

    def set_info(self, info: LatentInfo) -> list[tuple[Any, Latent]]:
        self.info = info
        released, kept = [], deque()
        for msg in self._held:
            try:
                released.append((msg, latent_from_message(msg, info)))
                self.counts["released"] += 1
            except ModelMismatch:
                kept.append(msg)  # another model still: maybe its info comes next
            except InfoMismatch as err:
                self.counts["dropped"] += 1
                self.last_problem = f"held message dropped: {err}"
        self._held = kept
        return released

    def add(self, msg: Any) -> Latent | None:
        if self.info is None:
            self._hold(msg, "no info yet")
            return None
        try:
            return latent_from_message(msg, self.info)
        except ModelMismatch as err:
            self._hold(msg, str(err))
        except ModelUnknown as err:
            self.counts["unknown"] += 1
            self.last_problem = str(err)
        return None

    def _hold(self, msg: Any, why: str) -> None:
        self.last_problem = why
        self._held.append(msg)
        self.counts["held"] += 1
        while len(self._held) > self.hold:
            self._held.popleft()
            self.counts["dropped"] += 1

    def pending(self) -> int:
        return len(self._held)


def shipped_model_dirs() -> list[Path]:
    """Where installed bundles live: share/sage_ros/models of a sourced ROS install (ament index), then the source
    checkout's models/ (a `pip install -e .` or a run from the repository)."""
    dirs = []
    try:
        from ament_index_python.packages import get_package_share_directory
        dirs.append(Path(get_package_share_directory("sage_ros")) / "models")
    except (ImportError, LookupError, OSError, ValueError):
        pass  # no ament index (AMENT_PREFIX_PATH unset: a venv, not a sourced ROS install) or not installed there
    dirs.append(Path(__file__).resolve().parents[2] / "models")
    return dirs


def _candidates(dirs: Iterable[Path], skipped: list[str]) -> Iterable[tuple[Path, dict]]:
    """(bundle directory, its bundle.json) for every readable, schema-valid bundle directly under each of `dirs`;
    why each other one was skipped goes to `skipped`."""
    seen = set()
    for directory in dirs:
        directory = Path(directory).expanduser()
        if not directory.is_dir():
            continue
        for meta_path in sorted(directory.glob(f"*/{BUNDLE_FILE}")):
            key = meta_path.resolve()
            if key in seen:
                continue
            seen.add(key)
            try:  # limited parse + schema: a hostile bundle.json is skipped with its reason, never a crash
                meta = read_bundle_meta(meta_path)
            except BundleError as err:
                skipped.append(str(err))
                continue
            yield meta_path.parent, meta


def find_bundle(info: LatentInfo, dirs: Sequence[Path] | None = None, *,
                allow_name: bool = True) -> tuple[Bundle, str]:
    """The installed bundle that decodes `info`'s latents, and how it was found.

    Order: a bundle whose encoder.onnx and decoder.onnx both have the info's sha256 ("checksum"); else one whose
    decoder.onnx has it ("decoder checksum": same decoder, re-exported encoder); else, with allow_name, one with the
    info's model name ("name": its decoder differs from the robot's, so images may differ). The bundle is loaded
    and verified (load_bundle). BundleNotFound names what was searched.
    """
    dirs = list(dirs) if dirs is not None else shipped_model_dirs()
    skipped: list[str] = []
    candidates = list(_candidates(dirs, skipped))
    model, encoder_sha, decoder_sha = info.identity

    def sha(meta: dict, role: str) -> str | None:  # the schema made these a dict and a str
        return meta["files"].get(meta.get(role, {}).get("file", f"{role}.onnx"))

    tiers = [("checksum", lambda m: sha(m, "encoder") == encoder_sha and sha(m, "decoder") == decoder_sha),
             ("decoder checksum", lambda m: sha(m, "decoder") == decoder_sha)]
    if allow_name:
        tiers.append(("name", lambda m: m.get("name") == model))
    errors = []
    for how, matches in tiers:
        for path, meta in candidates:
            if matches(meta):
                try:
                    return load_bundle(path), how
                except BundleError as err:  # corrupt copy: try the next one, report if none works
                    errors.append(str(err))
    searched = ", ".join(str(d) for d in dirs) or "(no directories)"
    detail = f"; unusable matches: {'; '.join(errors)}" if errors else ""
    if skipped:
        detail += f"; skipped {len(skipped)} invalid bundle.json: {'; '.join(skipped[:3])}"
    raise BundleNotFound(f"no bundle for {info.summary()} (encoder sha256 {encoder_sha[:12]}...) among "
                         f"{len(candidates)} bundles in {searched}{detail}")


class LatentDecoder:
    """Decodes latents of one info with its bundle's decoder.onnx through a runtime backend (onnxruntime default).

    `bundle` skips the search (a directory or Bundle); else find_bundle(info, dirs). `matched_by` says how.
    """

    def __init__(self, info: LatentInfo, dirs: Sequence[Path] | None = None, *, bundle=None,
                 backend: str = "onnxruntime", device: str = "cpu", allow_name: bool = True, **options):
        from .backends import make_backend  # here: parsing messages must not need onnxruntime

        self.info = info
        if bundle is None:
            self.bundle, self.matched_by = find_bundle(info, dirs, allow_name=allow_name)
        else:
            self.bundle, self.matched_by = (bundle if isinstance(bundle, Bundle) else load_bundle(bundle)), "given"
        if self.bundle.is_vq != info.is_puzzle or tuple(self.bundle.latent_shape) != (
                tuple(info["grid"]) if info.is_puzzle else (info["latent_dim"],)):
            raise InfoMismatch(f"bundle {self.bundle.name} (latent shape {list(self.bundle.latent_shape)}) cannot "
                               f"decode {info.summary()}")
        self.backend = make_backend(self.bundle, backend, device, **options)

    def decode(self, latents: Latent | Sequence[Latent]) -> np.ndarray:
        """One Latent -> H x W x 3 uint8; a sequence -> N x H x W x 3 (one batched decoder call)."""
        single = isinstance(latents, Latent)
        batch = [latents] if single else list(latents)
        z = np.stack([latent.z for latent in batch])
        images = decoded_to_rgb8(self.backend.decode(z.astype(np.int64) if self.info.is_puzzle else z),
                         self.bundle.input_range)
        return images[0] if single else images

    def decode_message(self, msg: Any) -> np.ndarray:
        return self.decode(latent_from_message(msg, self.info))

    def describe(self) -> dict[str, str]:
        described = self.backend.describe()
        return {"model": self.bundle.name, "bundle": str(self.bundle.path), "matched_by": self.matched_by,
                "backend": str(described.get("backend")), "device": str(described.get("device"))}

    def close(self) -> None:
        self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class StampPairer:
    """Pairs latents with their source frames by header stamp (exact match), holding at most `capacity` unpaired
    items per side (oldest evicted first, counted in `evicted`). Add from either side in any order; the call that
    completes a pair returns (frame, latent) and forgets both."""

    def __init__(self, capacity: int = 30):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._frames: OrderedDict[Any, Any] = OrderedDict()
        self._latents: OrderedDict[Any, Any] = OrderedDict()
        self.evicted = {"frames": 0, "latents": 0}

    def add_frame(self, stamp: Any, frame: Any) -> tuple[Any, Any] | None:
        latent = self._latents.pop(stamp, None)
        if latent is not None:
            return frame, latent
        self._put(self._frames, stamp, frame, "frames")
        return None

    def add_latent(self, stamp: Any, latent: Any) -> tuple[Any, Any] | None:
        frame = self._frames.pop(stamp, None)
        if frame is not None:
            return frame, latent
        self._put(self._latents, stamp, latent, "latents")
        return None

    def _put(self, side: OrderedDict, stamp: Any, item: Any, name: str) -> None:
        side[stamp] = item
        side.move_to_end(stamp)
        while len(side) > self.capacity:
            side.popitem(last=False)
            self.evicted[name] += 1

    def pending(self) -> tuple[int, int]:
        """(unpaired frames, unpaired latents) held now."""
        return len(self._frames), len(self._latents)


class StampJoiner:
    """Joins items of several streams by header stamp (exact match): a latent with its telemetry (and its source
    frame), as StampPairer does for two. `add(side, stamp, item)` returns {side: item} for every side once the last
    one with that stamp arrives, and forgets them; until then each side holds at most `capacity` unmatched items
    (oldest evicted first, counted in `evicted[side]`). Sides that a subscriber does not have (no frame topic) are
    simply not named in `sides`."""

    def __init__(self, sides: Sequence[str] = ("latent", "telemetry", "frame"), capacity: int = 30):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if len(set(sides)) != len(sides) or len(sides) < 2:
            raise ValueError(f"sides must be at least two distinct names, got {list(sides)}")
        self.sides = tuple(sides)
        self.capacity = capacity
        self._held: dict[str, OrderedDict] = {side: OrderedDict() for side in self.sides}
        self.evicted = {side: 0 for side in self.sides}

    def add(self, side: str, stamp: Any, item: Any) -> dict[str, Any] | None:
        if side not in self._held:
            raise KeyError(f"unknown side {side!r}; sides are {list(self.sides)}")
        held = self._held[side]
        held[stamp] = item
        held.move_to_end(stamp)
        if all(stamp in self._held[other] for other in self.sides):
            return {other: self._held[other].pop(stamp) for other in self.sides}
        while len(held) > self.capacity:
            held.popitem(last=False)
            self.evicted[side] += 1
        return None

    def pending(self) -> dict[str, int]:
        """Unmatched items held now, per side."""
        return {side: len(held) for side, held in self._held.items()}
