"""Untrained, seeded model bundles for the demo and replay tests (never shipped, never committed).

Until the trained bundles land under models/, `sage-ros demo --models DIR` is pointed at these. Every bundle is
named `untrained-*` and says so in its metrics, and the demo prints that its pictures show untrained models.

    .venv/bin/python test/demo_helpers.py /tmp/demo_models    # writes 4 bundles: TinyVAE fp32/int8/int4, puzzle fp32
"""
from __future__ import annotations

import sys
from pathlib import Path

UNTRAINED_NOTE = "UNTRAINED: seeded random weights, for demo plumbing and tests only"
SEED = 1234
LATENT_DIM = 16


def seeded_tinyvae(latent_dim: int = LATENT_DIM):
    import torch
    from sage_ros.models import build_model

    torch.manual_seed(SEED)
    return build_model("TinyVAE", latent_dim).eval()


def export_untrained_tinyvae(out_dir: Path, precision: str = "fp32") -> Path:
    """One seeded TinyVAE bundle (fp32 | int8 | int4) at out_dir."""
    from runtime_helpers import prebuilt

    copied = prebuilt(f"untrained-tinyvae-{precision}", out_dir)  # lanes without torch: exported beforehand
    if copied:
        return copied
    metrics = {"note": UNTRAINED_NOTE}
    name = f"untrained-tinyvae-l{LATENT_DIM}-{precision}"
    model = seeded_tinyvae()
    if precision == "fp32":
        from sage_ros.compression.export import export_bundle

        return export_bundle(model, out_dir, name=name, metrics=metrics, created_by="test/demo_helpers.py")
    from sage_ros.compression import onnx_int4, onnx_quant

    if precision == "int8":
        from sage_ros.data import load_split

        return onnx_quant.export_int8_bundle(model, out_dir, name=name, calibration_images=load_split(64, "val")[:64],
                                             metrics=metrics, created_by="test/demo_helpers.py")
    return onnx_int4.export_int4_bundle(model, out_dir, name=name, metrics=metrics, created_by="test/demo_helpers.py")


def export_untrained_puzzle(out_dir: Path) -> Path:
    from runtime_helpers import seeded_model  # codebook seeded from real frames, so codes vary
    from sage_ros.compression.export import export_bundle

    return export_bundle(seeded_model("VisionPuzzleVAE"), out_dir, name="untrained-puzzle-fp32",
                         metrics={"note": UNTRAINED_NOTE}, created_by="test/demo_helpers.py")


def export_untrained_demo_models(models_dir: Path) -> Path:
    """The four bundles the demo runs, under models_dir/<name>/."""
    models_dir = Path(models_dir)
    for precision in ("fp32", "int8", "int4"):
        export_untrained_tinyvae(models_dir / f"untrained-tinyvae-l{LATENT_DIM}-{precision}", precision)
    export_untrained_puzzle(models_dir / "untrained-puzzle-fp32")
    return models_dir


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    print(export_untrained_demo_models(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/demo_models")))
