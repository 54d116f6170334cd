"""Image folders (a robot's saved frames, a photo collection) -> uint8 N x size x size x 3 RGB arrays.

Files are found recursively (.jpg .jpeg .png .bmp, any case) and sorted, so results are deterministic.
`split` makes a train/val/test split by *file* (sha256 of the path relative to the folder), never by crop.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

from sage_ros.data.crops import cut_crop, sample_windows
from sage_ros.data.errors import DataError
from sage_ros.data.resize import FIT_MODES, fit_to_size

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
FOLDER_SPLITS = {"train": (0.0, 0.8), "val": (0.8, 0.9), "test": (0.9, 1.0)}  # fractions of the hash range


def list_images(path) -> list[Path]:
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def split_of(relative_path: str) -> str:
    """'train' | 'val' | 'test' for a file, from sha256 of its relative path (stable across machines)."""
    fraction = int(hashlib.sha256(relative_path.encode()).hexdigest()[:8], 16) / 16**8
    return next(name for name, (lo, hi) in FOLDER_SPLITS.items() if lo <= fraction < hi)


def read_image_rgb(path) -> np.ndarray:
    """Any jpg/png/bmp (grey, colour, alpha, 16-bit) -> uint8 H x W x 3 RGB; DataError if it cannot be read."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise DataError(f"cannot decode image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def load_image_folder(path, size: int, mode: str = "resize", *, split: str = "all",
                      crops_per_image: int = 8, seed: int = 0, max_images: int | None = None) -> np.ndarray:
    """All images under `path` as uint8 N x size x size x 3 RGB.

    mode: "resize" | "center" | "letterbox" (one array per image, as the encoder nodes crop), or "crops"
    (`crops_per_image` random square crops per image with scale and flip variety, like the bundled set).
    split: "all", or "train" | "val" | "test" (80/10/10 by file, see split_of).
    """
    if mode not in (*FIT_MODES, "crops"):
        raise DataError(f"mode must be one of {(*FIT_MODES, 'crops')}, got {mode!r}")
    if split != "all" and split not in FOLDER_SPLITS:
        raise DataError(f"split must be 'all' or one of {tuple(FOLDER_SPLITS)}, got {split!r}")
    root = Path(path)
    files = [f for f in list_images(root) if split == "all" or split_of(f.relative_to(root).as_posix()) == split]
    files = files[:max_images] if max_images is not None else files
    if not files:
        raise DataError(f"no {sorted(IMAGE_SUFFIXES)} images under {root} (split {split!r})")
    rng = np.random.default_rng(seed)
    out = []
    for file in files:
        image = read_image_rgb(file)
        if mode == "crops":
            windows = sample_windows(rng, crops_per_image, image.shape[0], image.shape[1], size)
            out.extend(cut_crop(image, window, size) for window in windows)
        else:
            out.append(fit_to_size(image, size, mode))
    return np.stack(out)
