"""Shared by the runtime tests: seeded models exported as bundles (never shipped), and real photographs."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

SEED = 1234
# A directory of the seeded bundles exported beforehand (test/distros/prebuilt.py), for test venvs without torch.
PREBUILT_ENV = "SAGE_ROS_TEST_BUNDLES"


def seeded_model(architecture: str):
    import torch
    from sage_ros.models import build_model

    torch.manual_seed(SEED)
    model = build_model(architecture, 8 if architecture == "TinyVAE" else None).eval()
    if architecture == "VisionPuzzleVAE":
        # An untrained codebook sits in a tiny ball away from the latents; seed it with latents of real frames
        # (as k-means-style VQ initialisation does) so the nearest-code search has real choices.
        from sage_ros.runtime.preprocess import Preprocessor
        x = torch.from_numpy(Preprocessor(224, (-1.0, 1.0), "center")(list(real_frames(4))))
        with torch.no_grad():
            z_e = model.encode_continuous(x).permute(0, 2, 3, 1).reshape(-1, model.latent_dim)
            pick = torch.randperm(z_e.shape[0], generator=torch.Generator().manual_seed(SEED))[:model.num_codes]
            model.codebook.weight.copy_(z_e[pick])
    return model


def prebuilt(name: str, out_dir) -> Path | None:
    """Where $SAGE_ROS_TEST_BUNDLES is set (a lane without torch, make test-distros): a copy of the bundle `name`
    that the main venv exported beforehand (scripts/ci/prebuilt_bundles.py) at out_dir; else None. Without torch
    and without it, the test is skipped: exporting needs torch."""
    root = os.environ.get(PREBUILT_ENV)
    if not root:
        import pytest
        pytest.importorskip("torch", reason=f"exporting a test bundle needs torch (or {PREBUILT_ENV})")
        return None
    source = Path(root) / name
    if not (source / "bundle.json").is_file():
        raise FileNotFoundError(f"{PREBUILT_ENV}={root} has no {name} bundle: run scripts/ci/prebuilt_bundles.py "
                                "there with the main venv")
    shutil.copytree(source, out_dir)
    return Path(out_dir)


def export_seeded(architecture: str, precision: str, out_dir):
    copied = prebuilt(f"{architecture}-{precision}", out_dir)
    if copied:
        return copied
    from sage_ros.compression.export import export_bundle

    return export_bundle(seeded_model(architecture), out_dir, name=f"test-{architecture}-{precision}",
                         precision=precision, metrics={"note": "untrained, seeded; tests only"},
                         created_by="test/runtime_helpers.py")


def real_frames(count: int = 6) -> np.ndarray:
    """count RGB frames (uint8, 240 x 320) cut from photographs that scikit-image ships (no download)."""
    import cv2
    from skimage import data

    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    frames = []
    for i in range(count):
        photo = photos[i % len(photos)]
        frames.append(cv2.resize(np.ascontiguousarray(photo[..., :3]), (320, 240), interpolation=cv2.INTER_AREA))
    return np.stack(frames)
