"""Online augmentation: training crops drawn fresh for every batch from the training-split source images.

Why: a fixed set of 12,000 crops cut from 28 photos and one video is memorised within a few epochs (held-out
PSNR goes *down* with more steps). Drawing every batch anew from the sources turns the same pixels into an
unbounded stream of distinct inputs, the way the node sees them: windows of many sizes and aspect ratios,
area-resized (cv2.INTER_AREA, as preprocess.resize_area) to the model's square input.

    sources = TrainSources.load()                       # training-split photos + video frames (data_cache)
    crops = OnlineCrops(sources, size=64, seed=0)
    batch = crops.batch(step=123, batch_size=64)        # uint8 64 x 64 x 64 x 3, a pure function of (seed, step)

Each crop: a source (photos weighted equally, video frames `video_share` of the time), a window whose area is
log-uniform between (max(size, 10 % of the short side))² and the whole short side², an aspect ratio log-uniform
in [1/max_aspect, max_aspect] (a 4:3 or 16:9 frame squashed to a square by crop_mode=resize), a horizontal flip
with p = 0.5, and mild colour jitter (brightness, contrast, saturation x U(1 ± jitter)). Val and test stay the
fixed crops of `make data` (fixed seeds, other sources): only training changes.

Batches are a pure function of (seed, step, rank), so a resumed run sees exactly the batches the killed run
would have. A background thread cuts the next batches while the model trains (cv2 releases the GIL).
"""
from __future__ import annotations

import dataclasses
import json
import queue
import threading
from pathlib import Path

import cv2
import numpy as np

from sage_ros.data import data_root
from sage_ros.data.errors import DataError, DataNotFoundError


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    video_share: float = 0.3      # fraction of crops cut from video frames (as the fixed crops)
    min_fraction: float = 0.1     # smallest window side as a fraction of the short side (floored at `size`)
    max_aspect: float = 16 / 9    # windows from 9:16 to 16:9, squashed to square like crop_mode=resize
    flip: bool = True
    jitter: float = 0.1           # brightness / contrast / saturation factors in U(1 - jitter, 1 + jitter)
    video_stride: int = 2         # keep every n-th training video frame (neighbours are near-duplicates)


class TrainSources:
    """The training-split source images, decoded once: photos (RGB uint8) and video frames."""

    def __init__(self, photos: list[np.ndarray], frames: list[np.ndarray], names: list[str],
                 frame_indices: list[int]):
        if not photos and not frames:
            raise DataError("no training source images")
        self.photos, self.frames, self.names, self.frame_indices = photos, frames, names, frame_indices
        self.clips: dict[str, int] = {}  # further clips' frames, appended to `frames` after the main video's

    @classmethod
    def load(cls, root=None, split: str = "train", video_stride: int = 2) -> "TrainSources":
        """Photos of `split` and its video frame range, as `make data` assigned them (crops/splits.json)."""
        root = Path(root) if root is not None else data_root()
        splits_path = root / "crops" / "splits.json"
        if not splits_path.is_file():
            raise DataNotFoundError(f"{splits_path} (run `make data`)")
        splits = json.loads(splits_path.read_text())
        names = sorted(splits["photos"][split])
        photos = [_read_rgb(root / "sources" / name) for name in names]
        start, stop = splits["video"]["ranges"][split]
        frames, indices = _read_frames(root / "sources" / splits["video"]["file"], start, stop, video_stride)
        sources = cls(photos, frames, names, indices)
        for video in splits.get("videos", []):  # further clips, each wholly in one split (make data, version 2)
            if video["split"] == split:
                more, _ = _read_frames(root / "sources" / video["file"], 0, video["frames"], video_stride)
                sources.frames += more  # frame_indices stay those of the split's range of the main video
                sources.clips[video["file"]] = len(more)
        return sources

    def describe(self) -> dict:
        return {"photos": len(self.photos), "video_frames": len(self.frames), "photo_names": self.names,
                "video_frame_range": [min(self.frame_indices), max(self.frame_indices) + 1] if self.frame_indices
                else None, "clips": dict(self.clips)}


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(f"cannot decode image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _read_frames(path: Path, start: int, stop: int, stride: int) -> tuple[list[np.ndarray], list[int]]:
    capture = cv2.VideoCapture(str(path))
    frames, indices, index = [], [], 0
    while index < stop:
        ok, bgr = capture.read()
        if not ok:
            break
        if index >= start and (index - start) % stride == 0:
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            indices.append(index)
        index += 1
    capture.release()
    return frames, indices


def sample_window(rng: np.random.Generator, height: int, width: int, size: int,
                  cfg: AugmentConfig) -> tuple[int, int, int, int]:
    """(y, x, h, w) inside height x width: log-uniform area and aspect (see the module docstring)."""
    short = min(height, width)
    lo = min(short, max(size, int(cfg.min_fraction * short)))
    side = float(np.exp(rng.uniform(np.log(lo), np.log(short))))
    aspect = float(np.exp(rng.uniform(-np.log(cfg.max_aspect), np.log(cfg.max_aspect))))  # w / h
    h = int(round(min(height, max(lo, side / np.sqrt(aspect)))))
    w = int(round(min(width, max(lo, side * np.sqrt(aspect)))))
    y = int(rng.integers(0, height - h + 1))
    x = int(rng.integers(0, width - w + 1))
    return y, x, h, w


def colour_jitter(crop: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Brightness, contrast and saturation each scaled by U(1 - amount, 1 + amount); uint8 in, uint8 out."""
    if amount <= 0:
        return crop
    b, c, s = rng.uniform(1 - amount, 1 + amount, 3)
    x = crop.astype(np.float32)
    grey = x @ np.array([0.299, 0.587, 0.114], np.float32)
    x = grey[..., None] + s * (x - grey[..., None])          # saturation around the pixel's grey
    x = grey.mean() + c * (x - grey.mean())                   # contrast around the crop's mean
    return np.clip(x * b, 0, 255).astype(np.uint8)


class OnlineCrops:
    """A stream of training batches; `batch(step, batch_size, rank)` is deterministic in (seed, step, rank)."""

    def __init__(self, sources: TrainSources, size: int, seed: int = 0, cfg: AugmentConfig | None = None):
        self.sources, self.size, self.seed = sources, int(size), int(seed)
        self.cfg = cfg or AugmentConfig()
        if not 0 <= self.cfg.video_share <= 1:
            raise ValueError(f"video_share must be in [0, 1], got {self.cfg.video_share}")
        self._prefetch: _Prefetcher | None = None

    def __len__(self) -> int:  # nominal: the stream is unbounded; this is what one "epoch" means in logs
        return 12000

    def crop(self, rng: np.random.Generator) -> np.ndarray:
        src = self.sources
        use_video = src.frames and (not src.photos or rng.random() < self.cfg.video_share)
        pool = src.frames if use_video else src.photos
        image = pool[int(rng.integers(len(pool)))]
        y, x, h, w = sample_window(rng, image.shape[0], image.shape[1], self.size, self.cfg)
        crop = cv2.resize(image[y:y + h, x:x + w], (self.size, self.size), interpolation=cv2.INTER_AREA)
        if self.cfg.flip and rng.random() < 0.5:
            crop = crop[:, ::-1]
        return colour_jitter(crop, rng, self.cfg.jitter)

    def make_batch(self, step: int, batch_size: int, rank: int = 0) -> np.ndarray:
        rng = np.random.default_rng([self.seed, int(step), int(rank), 0x5A6E])
        return np.stack([self.crop(rng) for _ in range(batch_size)])

    def batch(self, step: int, batch_size: int, rank: int = 0) -> np.ndarray:
        """uint8 N x size x size x 3 for `step`; served from the prefetch thread when it is running."""
        if self._prefetch is not None:
            return self._prefetch.get(step, batch_size, rank)
        return self.make_batch(step, batch_size, rank)

    def start_prefetch(self, first_step: int, batch_size: int, rank: int = 0, depth: int = 4) -> None:
        self.stop_prefetch()
        self._prefetch = _Prefetcher(self, first_step, batch_size, rank, depth)

    def stop_prefetch(self) -> None:
        if self._prefetch is not None:
            self._prefetch.stop()
            self._prefetch = None


class _Prefetcher:
    """One thread cutting batches for steps first_step, first_step + 1, ... into a bounded queue."""

    def __init__(self, crops: OnlineCrops, first_step: int, batch_size: int, rank: int, depth: int):
        self.crops, self.batch_size, self.rank = crops, batch_size, rank
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.next_step, self._stop = first_step, threading.Event()
        self.thread = threading.Thread(target=self._run, args=(first_step,), daemon=True, name="online-crops")
        self.thread.start()

    def _run(self, step: int) -> None:
        while not self._stop.is_set():
            item = (step, self.crops.make_batch(step, self.batch_size, self.rank))
            while not self._stop.is_set():
                try:
                    self.queue.put(item, timeout=0.2)
                    break
                except queue.Full:
                    continue
            step += 1

    def get(self, step: int, batch_size: int, rank: int) -> np.ndarray:
        if batch_size != self.batch_size or rank != self.rank:
            return self.crops.make_batch(step, batch_size, rank)
        while True:
            got_step, images = self.queue.get()
            if got_step == step:
                return images
            if got_step > step:  # asked for an earlier step than prefetched: compute it directly
                return self.crops.make_batch(step, batch_size, rank)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)


# ------------------------------------------------------------------------------- held-out views

HELD_OUT_VIEW_SEED = 20261128  # fixed: the held-out views must not move with a training seed


def held_out_windows(sources: TrainSources, size: int, count: int, seed: int, flip: bool = False) -> np.ndarray:
    """`count` windows of many sizes and aspects from `sources`, area-resized to size x size, no colour jitter
    (the crop sampler of training, seeded, so a held-out draw is the same every time)."""
    return OnlineCrops(sources, size, seed=seed, cfg=AugmentConfig(flip=flip, jitter=0.0)).make_batch(0, count)


def held_out_views(size: int, root=None, split: str = "test", n_windows: int = 1000) -> dict[str, np.ndarray]:
    """The held-out `split` seen three ways, each uint8 N x size x size x 3:

    - "crops":   the fixed square crops of `make data` (the split every report has used);
    - "windows": `n_windows` windows of many sizes and aspect ratios from the split's own source photos and
                 video frames, area-resized to the input (no flips, no colour jitter; a fixed seed);
    - "frames":  whole frames squashed to the input, as the node's default crop_mode=resize sees a camera:
                 every photo of the split and every 10th frame of its video range.
    """
    from sage_ros.data import load_split

    sources = TrainSources.load(root, split=split, video_stride=1)
    windows = held_out_windows(sources, size, n_windows, HELD_OUT_VIEW_SEED)
    whole = sources.photos + sources.frames[::10]
    frames = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in whole])
    return {"crops": np.asarray(load_split(size, split, root)), "windows": windows, "frames": frames}
