"""CIFAR-10 from the standard python batches (cifar-10-python.tar.gz unpacked: data_batch_1..5, test_batch).

Each batch is a pickled dict with b"data" (N x 3072 uint8: 1024 R, then 1024 G, then 1024 B values, each plane
row-major 32 x 32) and b"labels" (N ints 0..9). Unpickling is restricted to the numpy array classes those files
contain, so a tampered batch cannot run code (plain pickle.load would).
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from sage_ros.data.errors import DataError

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("_codecs", "encode")}  # how Python 3 pickles bytes at protocol 2: a pure function, harmless


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise DataError(f"CIFAR batch refers to {module}.{name}: not a CIFAR-10 python batch")
        return super().find_class(module, name)


def read_batch(path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (uint8 N x 32 x 32 x 3 RGB, int64 labels)."""
    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DataError(f"{path}: not a CIFAR-10 python batch ({exc})") from exc
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{path}: expected a dict with b'data' and b'labels'")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(f"{path}: b'data' must be uint8 N x 3072 with N labels, got {data.dtype} {data.shape},"
                        f" {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{path}: labels outside 0..9")
    # N x 3072 -> N x 3 (planes R, G, B) x 32 x 32 -> NHWC
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)), labels


def find_batches_dir(directory) -> Path:
    """The folder holding the batches: `directory` itself or its cifar-10-batches-py child."""
    directory = Path(directory)
    for candidate in (directory, directory / "cifar-10-batches-py"):
        if (candidate / "test_batch").is_file() or (candidate / "data_batch_1").is_file():
            return candidate
    raise DataError(f"no CIFAR-10 python batches (data_batch_1..5, test_batch) in {directory}")


def load_cifar10(directory, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """split "train" (data_batch_1..5, 50,000 images) or "test" (test_batch, 10,000) ->
    (uint8 N x 32 x 32 x 3 RGB, int64 labels). Missing batch files are an error, not a smaller set."""
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    folder = find_batches_dir(directory)
    names = TRAIN_BATCHES if split == "train" else TEST_BATCHES
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(f"{folder}: missing CIFAR-10 batches {missing}")
    parts = [read_batch(folder / n) for n in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
