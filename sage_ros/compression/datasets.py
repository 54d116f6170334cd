"""Training data as torch tensors, over the numpy data API of sage_ros.data.

Everything upstream hands us uint8 RGB NHWC arrays; this module turns them into float NCHW tensors in the
model's input range: [0, 1] for the Gaussian VAEs, and x * 2 - 1 for VisionPuzzleVAE (its `input_range` is
(-1, 1); the conversion is explicit, never guessed from the data).

Sources (`load_images(source, size, split, ...)`):
  bundled    sage_ros.data.load_split(size, split)  (the `make data` photographs; the default)
  cifar10    sage_ros.data.cifar.load_cifar10(path, split) resized to `size` (train/test batches; "val" is the
             last 10 % of the train batches)
  folder     sage_ros.data.folder.load_image_folder(path, size, split=split) (80/10/10 split by file)
  rosbag     sage_ros.data.rosbag.load_bag_images(path, topic, size)
  synthetic  seeded coloured shapes on gradients: tests and smoke runs that must not depend on `make data`
rosbag and synthetic have no split of their own: for a bag the first 80 % of the frames train, the next 10 %
validate and the last 10 % test (contiguous in time, because neighbouring frames are near-duplicates and a
random split would leak them into the test set); synthetic images get a seeded 80/10/10 permutation.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

SOURCES = ("bundled", "cifar10", "folder", "rosbag", "synthetic")
SPLITS = ("train", "val", "test")
SPLIT_SEED = 1234  # fixed: the held-out split must not move when the training seed changes


class DatasetError(ValueError):
    """Bad data source, split, or image array."""


def load_images(source: str = "bundled", size: int = 64, split: str = "train", *, path=None, topic=None,
                limit: int | None = None, synthetic_count: int = 256) -> np.ndarray:
    """uint8 RGB NHWC images of `size` x `size` from `source`, for `split`."""
    if split not in SPLITS:
        raise DatasetError(f"split must be one of {SPLITS}, got {split!r}")
    if source == "bundled":
        from sage_ros.data import load_split
        images = load_split(size, split, root=path, mmap=True)  # mapped: --limit then reads only what it uses
        images = np.array(images[:limit] if limit else images)  # a writable copy (torch warns on mmaps)
    elif source == "cifar10":
        images = _cifar_split(_require(path, "cifar10"), split, size)
    elif source == "folder":
        from sage_ros.data.folder import load_image_folder
        images = load_image_folder(_require(path, "folder"), size, split=split)  # 80/10/10 by file
    elif source == "rosbag":
        from sage_ros.data.rosbag import load_bag_images  # imports rosbags lazily: not on the GPU box
        if not topic:
            raise DatasetError("source 'rosbag' needs a topic")
        images = _split_contiguous(load_bag_images(_require(path, "rosbag"), topic, size), split)
    elif source == "synthetic":
        images = _split_of(synthetic_images(synthetic_count, size), split)
    else:
        raise DatasetError(f"unknown data source {source!r}; expected one of {SOURCES}")
    images = check_images(images, size)
    return images[:limit] if limit else images


def check_images(images, size: int | None = None) -> np.ndarray:
    """Validate a uint8 N x H x W x 3 array (one clear error instead of garbage downstream)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise DatasetError(f"expected uint8 N x H x W x 3 images, got {images.dtype} {images.shape}")
    if size is not None and images.shape[1:3] != (size, size):
        raise DatasetError(f"expected {size}x{size} images, got {images.shape[1]}x{images.shape[2]}")
    if len(images) == 0:
        raise DatasetError("no images")
    return images


def to_model_input(images_uint8: torch.Tensor, input_range=(0.0, 1.0)) -> torch.Tensor:
    """uint8 NHWC tensor -> float32 NCHW in `input_range` ((0, 1) or (-1, 1))."""
    x = images_uint8.permute(0, 3, 1, 2).float().div_(255.0)
    lo, hi = (float(v) for v in input_range)
    if (lo, hi) == (0.0, 1.0):
        return x.contiguous()
    if (lo, hi) == (-1.0, 1.0):
        return x.mul_(2.0).sub_(1.0).contiguous()
    raise DatasetError(f"unsupported input range {input_range}")


def to_unit_range(x: torch.Tensor, input_range=(0.0, 1.0)) -> torch.Tensor:
    """Model-range images back to [0, 1] (metrics are always computed on [0, 1])."""
    lo, hi = (float(v) for v in input_range)
    return ((x - lo) / (hi - lo)).clamp(0.0, 1.0)


class ImageDataset(Dataset):
    """uint8 NHWC images kept as one tensor; items/batches converted to the model's input range on access.

    `batch(indices)` gathers a whole batch with one indexing op: per-item __getitem__ + collation costs more
    than the forward pass of these tiny models, so the training loop uses `batch`.
    """

    def __init__(self, images_uint8, input_range=(0.0, 1.0), device: str | torch.device = "cpu"):
        images_uint8 = check_images(np.asarray(images_uint8)) if not torch.is_tensor(images_uint8) else images_uint8
        self.images = torch.as_tensor(images_uint8).to(device)
        self.input_range = tuple(input_range)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return to_model_input(self.images[index:index + 1], self.input_range)[0]

    def batch(self, indices) -> torch.Tensor:
        idx = torch.as_tensor(indices, dtype=torch.long, device=self.images.device)
        return to_model_input(self.images[idx], self.input_range)


def synthetic_images(count: int, size: int, seed: int = 0) -> np.ndarray:
    """Seeded images with structure a VAE can learn: a colour gradient plus a few filled circles/rectangles."""
    import cv2  # cv2 is a data-layer dependency anyway; lazy so that importing this module stays light

    rng = np.random.default_rng(seed)
    out = np.empty((count, size, size, 3), np.uint8)
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    for i in range(count):
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        t = ramp[None, :, None] if rng.random() < 0.5 else ramp[:, None, None]
        img = np.ascontiguousarray(np.broadcast_to(c0 * (1 - t) + c1 * t, (size, size, 3)).astype(np.uint8))
        for _ in range(rng.integers(1, 4)):
            color = tuple(int(v) for v in rng.integers(0, 256, 3))
            x, y = (int(v) for v in rng.integers(0, size, 2))
            r = int(rng.integers(size // 10 + 1, size // 3 + 2))
            if rng.random() < 0.5:
                cv2.circle(img, (x, y), r, color, -1)
            else:
                cv2.rectangle(img, (x - r, y - r), (x + r, y + r), color, -1)
        out[i] = img
    return out


def _require(path, source: str):
    if not path:
        raise DatasetError(f"source {source!r} needs a path")
    return path


def _split_of(images: np.ndarray, split: str) -> np.ndarray:
    """Seeded 80/10/10 split for sources without one of their own."""
    images = check_images(images)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(images))
    n_test = n_val = max(1, len(images) // 10) if len(images) >= 10 else 0
    parts = {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}
    if len(parts[split]) == 0:
        raise DatasetError(f"only {len(images)} images: too few for a {split!r} split")
    return images[np.sort(parts[split])]


def _split_contiguous(images: np.ndarray, split: str) -> np.ndarray:
    """80/10/10 split in time order (see the module docstring)."""
    images = check_images(images)
    n = len(images)
    a, b = int(n * 0.8), int(n * 0.9)
    part = {"train": images[:a], "val": images[a:b], "test": images[b:]}[split]
    if len(part) == 0:
        raise DatasetError(f"only {n} frames: too few for a {split!r} split")
    return part


def _cifar_split(path, split: str, size: int) -> np.ndarray:
    from sage_ros.data.cifar import load_cifar10

    images, _labels = load_cifar10(path, "test" if split == "test" else "train")
    if split != "test":
        n_val = len(images) // 10
        images = images[-n_val:] if split == "val" else images[:-n_val]
    if size != images.shape[1]:
        import cv2
        images = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images])
    return images
