"""Encoder outputs <-> the sensor_msgs/Image fields the encoder node publishes (docs/design.md "Topics").

One definition shared by the live encoder node and by `sage-ros bag encode`, so a latent recorded live and one
encoded offline are the same message:
- TinyVAE family -> `latent`: 32FC1, width L, little endian: row 0 = mu, row 1 = log sigma^2, then the identity row.
- VisionPuzzleVAE -> `puzzle`: mono8, width 30: 30 rows of codes 0..9, then the identity row.
The identity rows carry the fingerprint of the model that made the message (latent_info.py says the layout), so a
consumer never decodes a latent with another model's decoder, however late that model's info arrives. Outputs
without a "fingerprint" entry give format_version 1 messages (no identity rows).
The header (stamp, frame_id) is the source frame's. No rclpy / torch: works for rclpy, rosbags or plain fields.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .fingerprint import from_words, to_words
from .image_codec import ImageConversionError, image_to_numpy, numpy_to_image
from .latent_info import IDENTITY_MAGIC, identity_rows

LATENT_ENCODING = "32FC1"
PUZZLE_ENCODING = "mono8"
# |mu| or |log sigma^2| beyond this is no latent a trained VAE makes (they stay within tens): a broken model, bad
# weights or an overflowing fp16 graph. The encoder does not publish such rows; consumers refuse them.
MAX_ABS_LATENT = 1.0e6


def identity_block(fingerprint: str, kind: str, width: int) -> np.ndarray:
    """The identity rows for a message of `width` columns: float32 (latent) or uint8 (puzzle)."""
    if kind == "puzzle":
        cells = np.array([IDENTITY_MAGIC >> 8, IDENTITY_MAGIC & 0xFF, *int(fingerprint, 16).to_bytes(6, "big")],
                         np.uint8)
    else:
        cells = np.array([IDENTITY_MAGIC, *to_words(fingerprint)], np.float32)
    rows = identity_rows(kind, width)
    block = np.zeros(rows * width, cells.dtype)
    block[:cells.size] = cells
    return block.reshape(rows, width)


def read_identity(block: np.ndarray, kind: str) -> str | None:
    """The fingerprint held by identity rows `block`, or None when they are not a well-formed identity."""
    flat = np.asarray(block).ravel()
    if kind == "puzzle":
        if flat.size < 8 or flat.dtype != np.uint8 or flat[0] != IDENTITY_MAGIC >> 8 or flat[1] != IDENTITY_MAGIC & 0xFF:
            return None
        fingerprint = f"{int.from_bytes(bytes(int(b) for b in flat[2:8]), 'big'):012x}"
        rest = flat[8:]
    else:
        if flat.size < 4 or flat[0] != IDENTITY_MAGIC:
            return None
        fingerprint = from_words(flat[1:4])
        if fingerprint is None:
            return None
        rest = flat[4:]
    if np.any(rest != 0):
        return None
    return fingerprint


def split_identity(array: np.ndarray, kind: str) -> tuple[np.ndarray, str | None]:
    """A message's array -> (its data rows, the fingerprint) when it ends in identity rows, else (array, None)."""
    rows = identity_rows(kind, array.shape[1]) if array.ndim == 2 and array.shape[1] else 0
    if rows and array.shape[0] > rows:
        fingerprint = read_identity(array[-rows:], kind)
        if fingerprint is not None:
            return array[:-rows], fingerprint
    return array, None


def message_fingerprint(msg: Any) -> str | None:
    """The fingerprint a latent / puzzle message carries, None if it carries none or is malformed."""
    try:
        kind = "puzzle" if msg.encoding == PUZZLE_ENCODING else "latent"
        return split_identity(image_to_numpy(msg), kind)[1]
    except Exception:  # noqa: BLE001 - any malformed message simply carries no readable identity
        return None


def output_topic_kind(outputs_or_names) -> str:
    """'puzzle' for a VQ model's outputs ("codes"), else 'latent'."""
    return "puzzle" if "codes" in outputs_or_names else "latent"


def output_array(outputs: dict[str, np.ndarray], index: int) -> tuple[np.ndarray, str]:
    """Row `index` of a batch of encoder outputs -> (array to publish, encoding)."""
    fingerprint = str(outputs["fingerprint"][index]) if "fingerprint" in outputs else None
    if "codes" in outputs:
        codes = np.asarray(outputs["codes"][index])
        if codes.ndim != 2 or codes.size and (codes.min() < 0 or codes.max() > 255):
            raise ImageConversionError(f"codes must be a 2-D grid of small non-negative ints, got {codes.shape}")
        grid = codes.astype(np.uint8)
        if fingerprint is not None:
            grid = np.concatenate([grid, identity_block(fingerprint, "puzzle", grid.shape[1])])
        return grid, PUZZLE_ENCODING
    mu, logvar = np.asarray(outputs["mu"][index]), np.asarray(outputs["logvar"][index])
    if mu.ndim != 1 or mu.shape != logvar.shape:
        raise ImageConversionError(f"mu / logvar must be equal 1-D vectors, got {mu.shape} / {logvar.shape}")
    rows = [mu.astype(np.float32), logvar.astype(np.float32)]
    if fingerprint is not None:
        rows.extend(identity_block(fingerprint, "latent", mu.shape[0]))
    return np.stack(rows), LATENT_ENCODING


def output_to_image(outputs: dict[str, np.ndarray], index: int, header: Any = None, msg: Any = None) -> Any:
    """Row `index` of encoder outputs -> sensor_msgs/Image (filled into `msg` when given) with `header`."""
    array, encoding = output_array(outputs, index)
    return numpy_to_image(array, encoding, header=header, msg=msg)


def image_to_output(msg: Any) -> dict[str, np.ndarray]:
    """The inverse, for tests and tools: a latent / puzzle Image -> {"mu","logvar"} or {"codes"} (copies), identity
    rows dropped (read them with message_fingerprint; consumers use consumer.latent_from_message, which checks them)."""
    array = image_to_numpy(msg)
    if msg.encoding == LATENT_ENCODING:
        array, _ = split_identity(array, "latent")
        if array.shape[0] != 2:
            raise ImageConversionError(f"a latent image has height 2 (mu, logvar) + identity rows, got {array.shape}")
        return {"mu": array[0].copy(), "logvar": array[1].copy()}
    if msg.encoding == PUZZLE_ENCODING:
        return {"codes": split_identity(array, "puzzle")[0].copy()}
    raise ImageConversionError(f"not a latent / puzzle image: encoding {msg.encoding!r}")
