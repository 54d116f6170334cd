"""The leave-one-family-out check's data (numpy + cv2 only): one whole source family kept out of every split.

`make data` holds out crops.HOLDOUT_FAMILY (a wallpaper package of landscape and nature photographs) from train,
val and test, so no model trains on it. This is how a user meets the models: photographs of a kind the project
never trained on. The family is split in two halves by file: the *fit* half is what a user could fit a baseline
on in a minute (PCA-L, a 10-colour palette), the *eval* half is where model and baseline are compared, on windows
of many sizes and aspect ratios plus the whole frames, each area-resized to the model input as the encoder node
does (crop_mode=resize).

    fit_files, eval_files = holdout_halves()
    fit = load_photos(fit_files); windows = family_windows(load_photos(eval_files), size=64, n=600, seed=1)
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np

from sage_ros.data import data_root
from sage_ros.data.errors import DataError, DataNotFoundError
from sage_ros.data.resize import fit_to_size

MAX_ASPECT = 16 / 9     # windows from 9:16 to 16:9, squashed to the square input like crop_mode=resize
MIN_FRACTION = 0.1      # smallest window side as a fraction of the short side (floored at the input size), as
#                         the training crops and augment.held_out_windows


def holdout_halves(root=None, family: str | None = None) -> tuple[list[Path], list[Path]]:
    """(fit, eval) photo paths of the held-out family (default: the one `make data` held out): ranked by sha256
    of the file name, even ranks fit, odd ranks eval (so the halves differ by at most one photo)."""
    root = Path(root) if root is not None else data_root()
    path = root / "crops" / "splits.json"
    if not path.is_file():
        raise DataNotFoundError(f"{path} (run `make data`)")
    splits = json.loads(path.read_text())
    if "families" not in splits:
        raise DataError(f"{path} predates source families (rerun `make data`)")
    family = family or splits["holdout_family"]
    photos = [f for f in splits["families"].get(family, []) if not f.endswith((".avi", ".mp4"))]
    if len(photos) < 2:
        raise DataError(f"family {family!r} has {len(photos)} photos; the check needs at least 2")
    ranked = sorted(photos, key=lambda f: hashlib.sha256(f.encode()).hexdigest())
    return [root / "sources" / f for f in ranked[0::2]], [root / "sources" / f for f in ranked[1::2]]


def load_photos(paths) -> list[np.ndarray]:
    images = []
    for path in paths:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DataError(f"cannot decode image {path}")
        images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return images


def family_windows(images: list[np.ndarray], size: int, n: int, seed: int = 0,
                   whole_frames: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 N x size x size x 3, bool N "is a whole frame"): every photo whole (if `whole_frames`), then `n`
    random windows, photos taken in turn, log-uniform area from (max(size, 10 % of the short side))^2 up to the
    short side^2, log-uniform aspect in [1/MAX_ASPECT, MAX_ASPECT], no flip, no jitter; all area-resized to
    size x size as the node does."""
    if not images:
        raise DataError("no images to cut windows from")
    rng = np.random.default_rng([int(seed), int(size), 0x10F0])
    out, whole = [], []
    if whole_frames:
        out += [fit_to_size(im, size) for im in images]
        whole += [True] * len(images)
    for i in range(int(n)):
        image = images[i % len(images)]
        height, width = image.shape[:2]
        short = min(height, width)
        lo = min(short, max(size, int(MIN_FRACTION * short)))
        side = float(np.exp(rng.uniform(np.log(lo), np.log(short))))
        aspect = float(np.exp(rng.uniform(-np.log(MAX_ASPECT), np.log(MAX_ASPECT))))
        h = int(round(min(height, max(lo, side / np.sqrt(aspect)))))
        w = int(round(min(width, max(lo, side * np.sqrt(aspect)))))
        y = int(rng.integers(0, height - h + 1))
        x = int(rng.integers(0, width - w + 1))
        out.append(fit_to_size(image[y:y + h, x:x + w], size))
        whole.append(False)
    return np.stack(out), np.array(whole, bool)
