"""The encoder node's work as plain functions (message -> frame -> model -> message), callable without a ROS
graph: the node's worker thread calls these, and so do the tests that check the node's output against an
offline encoding of the same frames. No rclpy here (sensor_msgs message classes only); no torch.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Hashable, Sequence

import numpy as np

from sage_ros.runtime.image_codec import (DEFAULT_MAX_PIXELS, ImageConversionError, check_compressed, check_image,
                                          decode_compressed, image_msg_to_rgb8, image_to_numpy, numpy_to_image)
from sage_ros.runtime.latent_info import bundle_fingerprint
from sage_ros.runtime.messages import MAX_ABS_LATENT, output_to_image
from sage_ros.runtime.postprocess import decoded_to_rgb8  # the latent_decoder's too: robot and operator images agree
from sage_ros.runtime.preprocess import Prepared, Preprocessor


def decode_min_size(bundle, crop_mode: str) -> int | None:
    """Smallest frame side a compressed frame may be decoded at (libjpeg 1/2, 1/4, 1/8 scaling).

    The motion crop works in frame pixels (a model-size window around the motion peak), so it needs the full
    frame; every other mode only needs the model's input size.
    """
    return None if crop_mode == "motion" else max(bundle.input_size)


def frame_from_message(msg: Any, *, compressed: bool, min_size: int | None = None,
                       max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """sensor_msgs/Image (any supported encoding) or CompressedImage -> H x W x 3 uint8 RGB.

    Raises ImageConversionError for anything malformed, unsupported, non-finite or larger than `max_pixels`.
    """
    if compressed:
        return decode_compressed(msg, min_size, max_pixels)
    check_image(msg, max_pixels)
    return image_msg_to_rgb8(msg)


def admission_error(msg: Any, *, compressed: bool, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> str | None:
    """Why a message may not take a latest-frame-wins slot (None: it may), checked in the subscription callback.

    Raw frames get every check their conversion makes (fields, data length, size limit, NaN/inf in float
    images: a VGA 32FC1 scan costs ~0.3 ms), so an admitted raw frame always converts. Compressed frames get what
    the header tells (format, declared size against `max_pixels`) without decoding; corrupt entropy-coded data
    shows only when the worker decodes, which is why a slot also keeps the frame its newest one superseded.
    """
    try:
        if compressed:
            check_compressed(msg, max_pixels)
        else:
            check_image(msg, max_pixels)
            if msg.encoding == "32FC1" and not np.isfinite(image_to_numpy(msg)).all():
                raise ImageConversionError("32FC1 image holds NaN or inf")
    except ImageConversionError as err:
        return str(err)
    except Exception as err:  # noqa: BLE001 - a hostile message must never raise out of a callback
        return f"{type(err).__name__}: {err}"
    return None


def first_decodable(pending: "Pending", decode) -> tuple[np.ndarray | None, "Pending | None", list[str]]:
    """Decode the newest frame of a slot, else the valid frame it superseded: (frame, the Pending used, reasons
    of every frame that failed). A frame that fails never costs its camera the frame before it."""
    reasons = []
    candidate = pending
    while candidate is not None:
        try:
            return decode(candidate.msg), candidate, reasons
        except Exception as err:  # noqa: BLE001 - ImageConversionError, cv2.error, MemoryError: all a bad frame
            reasons.append(str(err) if isinstance(err, ImageConversionError) else f"{type(err).__name__}: {err}")
        candidate = candidate.previous
    return None, None, reasons


def encode_frames(backend, preprocessor: Preprocessor, frames: Sequence[np.ndarray],
                  cameras: Sequence[Hashable] | None = None) -> dict[str, np.ndarray]:
    """Frames (one per camera) -> one batched backend call -> {"mu","logvar"} or {"codes"} (N rows), plus
    "fingerprint" (N rows of the backend's model fingerprint): every message made from them carries it."""
    return encode_prepared(backend, preprocessor, frames, cameras)[1]


def implausible_rows(outputs: dict[str, np.ndarray]) -> dict[int, str]:
    """{row: reason} for every batch row of encoder outputs that must not be published as a valid latent:
    non-finite or |value| > MAX_ABS_LATENT in mu / logvar. Puzzle codes are range-checked in output_array."""
    bad: dict[int, str] = {}
    for key in ("mu", "logvar"):
        if key not in outputs:
            continue
        values = np.asarray(outputs[key], dtype=np.float64).reshape(len(outputs[key]), -1)
        finite = np.isfinite(values).all(axis=1)
        largest = np.where(np.isfinite(values), np.abs(values), 0.0).max(axis=1, initial=0.0)
        for row in np.flatnonzero(~finite | (largest > MAX_ABS_LATENT)):
            bad.setdefault(int(row), f"{key} of row {int(row)} is " + (
                "not finite (NaN / inf)" if not finite[row] else f"implausible (|{key}| up to {largest[row]:.3g} "
                f"> {MAX_ABS_LATENT:g})"))
    return bad


def encode_prepared(backend, preprocessor: Preprocessor, frames: Sequence[np.ndarray],
                    cameras: Sequence[Hashable] | None = None) -> tuple[Prepared, dict[str, np.ndarray]]:
    """As encode_frames (fingerprint included), also returning the model input and each frame's crop window (for
    telemetry)."""
    prepared = preprocessor.prepare(list(frames), cameras)
    outputs = dict(backend.encode(prepared.batch))
    outputs["fingerprint"] = np.array([bundle_fingerprint(backend.bundle)] * len(prepared.windows))
    return prepared, outputs


def decode_batch(batch: Sequence[tuple[Hashable, Any]], decode) -> tuple[list, list, list, int]:
    """One pending message per camera -> (frames, kept (camera, pending used), [(camera, reason)] of the frames that
    did not decode, how many kept ones are an older frame than the newest). One frame's failure costs neither this
    camera's previous frame nor another camera's (first_decodable)."""
    frames, kept, bad, superseded = [], [], [], 0
    for camera, pending in batch:
        frame, used, reasons = first_decodable(pending, decode)
        bad.extend((camera, reason) for reason in reasons)
        if used is not None:
            superseded += used is not pending
            frames.append(frame)
            kept.append((camera, used))
    return frames, kept, bad, superseded


def drop_implausible(outputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[int], dict[int, str]]:
    """(outputs without the rows implausible_rows refuses, the batch rows kept, {refused row: reason})."""
    bad = implausible_rows(outputs)
    rows = [row for row in range(len(next(iter(outputs.values())))) if row not in bad]  # every entry: N rows
    return ({key: value[rows] for key, value in outputs.items()} if bad else outputs), rows, bad


def output_messages(outputs: dict[str, np.ndarray], headers: Sequence[Any]) -> list[Any]:
    """Row i of the outputs -> `latent` (32FC1, 2 x L) or `puzzle` (mono8, 30 x 30) Image with headers[i]."""
    return [output_to_image(outputs, index, header=header) for index, header in enumerate(headers)]


def reconstruction_messages(backend, outputs: dict[str, np.ndarray], headers: Sequence[Any]) -> list[Any]:
    """Decode mu (or the codes) and render rgb8 Images at the model's resolution."""
    z = outputs["codes"] if "codes" in outputs else outputs["mu"]
    images = decoded_to_rgb8(backend.decode(z), backend.bundle.input_range)
    return [numpy_to_image(image, "rgb8", header=header) for image, header in zip(images, headers)]


# How many superseded frames a slot keeps behind its newest one: compressed frames whose data is corrupt pass the
# callback's header checks, and this many of them in a row still leave the good frame before them to encode.
FALLBACK_DEPTH = 3


class LatestFrameSlots:
    """One slot per camera holding only its newest message: latest frame wins, nothing ever queues.

    `put` from subscription callbacks; `take` from the inference worker returns every filled slot at once
    (cameras whose frames are pending together are encoded as one batch). Overwritten messages are counted
    in `dropped`.
    """

    def __init__(self, cameras: int):
        self._ready = threading.Condition()
        self._slots: list[Any] = [None] * cameras
        self.dropped = 0

    def put(self, camera: int, item: Any) -> bool:
        """Store `item`; True when it replaced one that was never encoded (a drop). An item with a `previous`
        attribute (Pending) keeps the one it replaced there, up to FALLBACK_DEPTH older items, so the worker can
        fall back to them when newer ones do not decode."""
        with self._ready:
            old = self._slots[camera]
            replaced = old is not None
            if replaced and hasattr(item, "previous"):
                item.previous = old
                tail, kept = old, 1
                while tail.previous is not None and kept < FALLBACK_DEPTH:
                    tail, kept = tail.previous, kept + 1
                tail.previous = None
            self.dropped += replaced
            self._slots[camera] = item
            self._ready.notify()
            return replaced

    def take(self, timeout: float | None = None) -> list[tuple[int, Any]]:
        """Wait up to `timeout` s for a frame; return [(camera, item)] of every filled slot and empty them."""
        with self._ready:
            if not any(slot is not None for slot in self._slots):
                self._ready.wait(timeout)
            taken = [(camera, item) for camera, item in enumerate(self._slots) if item is not None]
            self._slots = [None] * len(self._slots)
            return taken

    def clear(self) -> int:
        """Empty every slot (on deactivate); returns how many frames were discarded."""
        with self._ready:
            discarded = sum(slot is not None for slot in self._slots)
            self._slots = [None] * len(self._slots)
            self._ready.notify_all()
            return discarded

    def wake(self) -> None:
        with self._ready:
            self._ready.notify_all()


@dataclass
class Pending:
    """A received message waiting in its slot, with its receive time (monotonic s) for latency, and the admitted
    frame it superseded (kept until this one has decoded)."""
    msg: Any
    received: float
    previous: "Pending | None" = None


__all__ = ["ImageConversionError", "decode_min_size", "frame_from_message", "admission_error", "first_decodable",
           "decode_batch", "encode_frames", "encode_prepared", "output_messages", "implausible_rows", "drop_implausible",
           "MAX_ABS_LATENT", "reconstruction_messages", "LatestFrameSlots", "Pending"]
