"""Model output -> images: a decoder's N x 3 x H x W float output in a bundle's input range -> uint8 RGB frames.

The inverse of preprocess.py's range mapping. One definition for the encoder node's `reconstruction` topic and
the latent decoder (runtime/consumer.py), so the robot's and the operator's reconstructions agree. numpy only.
"""
from __future__ import annotations

import numpy as np


def decoded_to_rgb8(images_nchw: np.ndarray, input_range: tuple[float, float]) -> np.ndarray:
    """Decoder output N x 3 x H x W in [lo, hi] -> N x H x W x 3 uint8 (clipped, rounded half up)."""
    lo, hi = input_range
    scaled = (np.asarray(images_nchw, np.float32) - lo) * (255.0 / (hi - lo))
    return np.ascontiguousarray(np.clip(scaled + 0.5, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1))
