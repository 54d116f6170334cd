"""Frame -> model-size square, the same way the encoder nodes do it (sage_ros.runtime.preprocess), so data
loaded for training or evaluation matches what the robot feeds the model. cv2.INTER_AREA throughout."""
from __future__ import annotations

import numpy as np

from sage_ros.data.errors import DataError
from sage_ros.runtime.preprocess import center_crop, letterbox, resize_area

# "resize" (whole frame, aspect not kept; the encoder nodes' default), "center" (largest centred square),
# "letterbox" (whole frame, aspect kept, black bars).
FIT_MODES = ("resize", "center", "letterbox")


def fit_to_size(image: np.ndarray, size: int, mode: str = "resize") -> np.ndarray:
    """uint8 H x W x 3 RGB -> uint8 size x size x 3 RGB."""
    if mode not in FIT_MODES:
        raise DataError(f"mode must be one of {FIT_MODES}, got {mode!r}")
    if size < 1:
        raise DataError(f"size must be >= 1, got {size}")
    square = (size, size)
    if mode == "resize":
        return np.ascontiguousarray(resize_area(image, square))
    if mode == "center":
        return np.ascontiguousarray(center_crop(image, square))
    return letterbox(image, square)
