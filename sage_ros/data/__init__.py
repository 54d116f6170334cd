"""Datasets for sage_ros (numpy + cv2 only; never torch or rclpy): the bundled real-image crops, CIFAR-10
python batches (cifar.py), image folders (folder.py) and rosbag2 image topics (rosbag.py).

Every loader returns uint8 RGB arrays in N x H x W x 3 (NHWC) order; resizing is cv2.INTER_AREA everywhere.
The bundled data is built by `make data` (sage_ros/data/fetch.py) into data_cache/ or $SAGE_ROS_DATA.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sage_ros.data.errors import DataError, DataNotFoundError

SIZES = (32, 64, 224)
SPLITS = ("train", "val", "test")
CIFAR_TEST = "cifar_test"  # the 20 real CIFAR-10 test images foolbox ships; 32 px only, never trained on

__all__ = ["SIZES", "SPLITS", "CIFAR_TEST", "DataError", "DataNotFoundError", "data_root", "load_split",
           "load_cifar_test", "vtest_bag_path", "splits_info"]


def data_root() -> Path:
    """$SAGE_ROS_DATA if set, else <repository>/data_cache (where `make data` writes)."""
    env = os.environ.get("SAGE_ROS_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "data_cache"


def _root(root) -> Path:
    return Path(root) if root is not None else data_root()


def load_split(size: int, split: str, root=None, mmap: bool = False) -> np.ndarray:
    """Bundled crops of `size` px (32, 64 or 224) for split "train" | "val" | "test" (or "cifar_test" at 32):
    uint8 N x size x size x 3 RGB. `mmap=True` maps the file read-only instead of loading it."""
    if size not in SIZES:
        raise DataError(f"size must be one of {SIZES}, got {size!r}")
    if split not in SPLITS and not (split == CIFAR_TEST and size == 32):
        raise DataError(f"split must be one of {SPLITS} (or {CIFAR_TEST!r} at size 32), got {split!r}")
    path = _root(root) / "crops" / f"{size}_{split}.npy"
    if not path.is_file():
        raise DataNotFoundError(f"bundled crops {path}")
    images = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    if images.dtype != np.uint8 or images.shape[1:] != (size, size, 3):
        raise DataError(f"{path}: expected uint8 N x {size} x {size} x 3, got {images.dtype} {images.shape}")
    return images


def load_cifar_test(root=None) -> tuple[np.ndarray, np.ndarray]:
    """The 20 real CIFAR-10 test images shipped by foolbox: (uint8 20 x 32 x 32 x 3 RGB, int64 labels)."""
    images = load_split(32, CIFAR_TEST, root)
    path = _root(root) / "crops" / "cifar_test_labels.npy"
    if not path.is_file():
        raise DataNotFoundError(f"CIFAR labels {path}")
    return images, np.load(path, allow_pickle=False)


def vtest_bag_path(root=None, storage: str = "mcap") -> Path:
    """The bundled real-camera rosbag2 directory (mcap; storage="sqlite3" gives the short sqlite3 variant)."""
    name = {"mcap": "vtest", "sqlite3": "vtest_sqlite3"}.get(storage)
    if name is None:
        raise DataError(f"storage must be 'mcap' or 'sqlite3', got {storage!r}")
    path = _root(root) / "bags" / name
    if not (path / "metadata.yaml").is_file():
        raise DataNotFoundError(f"bundled rosbag {path}")
    return path


def splits_info(root=None) -> dict:
    """crops/splits.json: which sources went into which split, counts, seed, sha256 of every array."""
    import json

    path = _root(root) / "crops" / "splits.json"
    if not path.is_file():
        raise DataNotFoundError(f"split description {path}")
    return json.loads(path.read_text())
