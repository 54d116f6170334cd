"""Encoder outputs <-> the sensor_msgs/Image fields the encoder node publishes (docs/design.md "Topics").

One definition shared by the live encoder node and by `sage-ros bag encode`, so a latent recorded live and one
encoded offline are the same message:
- TinyVAE family -> `latent`: 32FC1, height 2 (row 0 = mu, row 1 = log sigma^2), width L, little endian.
- VisionPuzzleVAE -> `puzzle`: mono8, 30 x 30, values 0..9.
The header (stamp, frame_id) is the source frame's. No rclpy / torch: works for rclpy, rosbags or plain fields.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .image_codec import ImageConversionError, image_to_numpy, numpy_to_image

LATENT_ENCODING = "32FC1"
PUZZLE_ENCODING = "mono8"


def output_topic_kind(outputs_or_names) -> str:
    """'puzzle' for a VQ model's outputs ("codes"), else 'latent'."""
    return "puzzle" if "codes" in outputs_or_names else "latent"


def output_array(outputs: dict[str, np.ndarray], index: int) -> tuple[np.ndarray, str]:
    """Row `index` of a batch of encoder outputs -> (array to publish, encoding)."""
    if "codes" in outputs:
        codes = np.asarray(outputs["codes"][index])
        if codes.ndim != 2 or codes.size and (codes.min() < 0 or codes.max() > 255):
            raise ImageConversionError(f"codes must be a 2-D grid of small non-negative ints, got {codes.shape}")
        return codes.astype(np.uint8), PUZZLE_ENCODING
    mu, logvar = np.asarray(outputs["mu"][index]), np.asarray(outputs["logvar"][index])
    if mu.ndim != 1 or mu.shape != logvar.shape:
        raise ImageConversionError(f"mu / logvar must be equal 1-D vectors, got {mu.shape} / {logvar.shape}")
    return np.stack([mu, logvar]).astype(np.float32), LATENT_ENCODING


def output_to_image(outputs: dict[str, np.ndarray], index: int, header: Any = None, msg: Any = None) -> Any:
    """Row `index` of encoder outputs -> sensor_msgs/Image (filled into `msg` when given) with `header`."""
    array, encoding = output_array(outputs, index)
    return numpy_to_image(array, encoding, header=header, msg=msg)


def image_to_output(msg: Any) -> dict[str, np.ndarray]:
    """The inverse, for consumers and tests: a latent / puzzle Image -> {"mu","logvar"} or {"codes"} (copies)."""
    array = image_to_numpy(msg)
    if msg.encoding == LATENT_ENCODING:
        if array.shape[0] != 2:
            raise ImageConversionError(f"a latent image has height 2 (mu, logvar), got {array.shape}")
        return {"mu": array[0].copy(), "logvar": array[1].copy()}
    if msg.encoding == PUZZLE_ENCODING:
        return {"codes": array.copy()}
    raise ImageConversionError(f"not a latent / puzzle image: encoding {msg.encoding!r}")
