"""The encoder node's work as plain functions (message -> frame -> model -> message), callable without a ROS
graph: the node's worker thread calls these, and so do the tests that check the node's output against an
offline encoding of the same frames. No rclpy here (sensor_msgs message classes only); no torch.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Hashable, Sequence

import numpy as np

from sage_ros.runtime.image_codec import (ImageConversionError, decode_compressed, image_msg_to_rgb8,
                                          numpy_to_image)
from sage_ros.runtime.messages import output_to_image
from sage_ros.runtime.preprocess import Preprocessor


def decode_min_size(bundle, crop_mode: str) -> int | None:
    """Smallest frame side a compressed frame may be decoded at (libjpeg 1/2, 1/4, 1/8 scaling).

    The motion crop works in frame pixels (a model-size window around the motion peak), so it needs the full
    frame; every other mode only needs the model's input size.
    """
    return None if crop_mode == "motion" else max(bundle.input_size)


def frame_from_message(msg: Any, *, compressed: bool, min_size: int | None = None) -> np.ndarray:
    """sensor_msgs/Image (any supported encoding) or CompressedImage -> H x W x 3 uint8 RGB.

    Raises ImageConversionError for anything malformed, unsupported or non-finite.
    """
    if compressed:
        return decode_compressed(msg, min_size)
    return image_msg_to_rgb8(msg)


def encode_frames(backend, preprocessor: Preprocessor, frames: Sequence[np.ndarray],
                  cameras: Sequence[Hashable] | None = None) -> dict[str, np.ndarray]:
    """Frames (one per camera) -> one batched backend call -> {"mu","logvar"} or {"codes"} (N rows)."""
    return backend.encode(preprocessor(list(frames), cameras))


def output_messages(outputs: dict[str, np.ndarray], headers: Sequence[Any]) -> list[Any]:
    """Row i of the outputs -> `latent` (32FC1, 2 x L) or `puzzle` (mono8, 30 x 30) Image with headers[i]."""
    return [output_to_image(outputs, index, header=header) for index, header in enumerate(headers)]


def reconstruction_messages(backend, outputs: dict[str, np.ndarray], headers: Sequence[Any]) -> list[Any]:
    """Decode mu (or the codes) and render rgb8 Images at the model's resolution."""
    z = outputs["codes"] if "codes" in outputs else outputs["mu"]
    images = to_rgb8(backend.decode(z), backend.bundle.input_range)
    return [numpy_to_image(image, "rgb8", header=header) for image, header in zip(images, headers)]


def to_rgb8(images_nchw: np.ndarray, input_range: tuple[float, float]) -> np.ndarray:
    """N x 3 x H x W in [lo, hi] -> N x H x W x 3 uint8 (clipped, rounded)."""
    lo, hi = input_range
    scaled = (np.asarray(images_nchw, np.float32) - lo) * (255.0 / (hi - lo))
    return np.ascontiguousarray(np.clip(scaled + 0.5, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1))


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
        """Store `item`; True when it replaced one that was never encoded (a drop)."""
        with self._ready:
            replaced = self._slots[camera] is not None
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
    """A received message waiting in its slot, with its receive time (monotonic s) for latency."""
    msg: Any
    received: float


__all__ = ["ImageConversionError", "decode_min_size", "frame_from_message", "encode_frames", "output_messages",
           "reconstruction_messages", "to_rgb8", "LatestFrameSlots", "Pending"]
