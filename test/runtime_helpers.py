"""Shared by the runtime tests: seeded models exported as bundles (never shipped), and real photographs."""
import numpy as np

SEED = 1234


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


def export_seeded(architecture: str, precision: str, out_dir):
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
