"""Which bundles to benchmark: every models/*/bundle.json, or seeded stand-ins exported into a scratch dir.

Until trained bundles are shipped under models/, benchmarks still need real graphs of the real architectures;
speed does not depend on trained weight values, so seeded (untrained) models exported through the product's own
export path (sage_ros.compression.export) are faithful stand-ins for timing. They are never committed.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import harness

MODELS_DIR = harness.REPO / "models"
SCRATCH = harness.REPO / "runs" / "bench" / "bundles"
STAND_INS = (("TinyVAE", 64), ("TinyVAE32", 64), ("VisionPuzzleVAE", 64))


def discover(models_dir: Path = MODELS_DIR) -> list[Path]:
    """Bundle directories under models_dir, sorted by name."""
    if not models_dir.is_dir():
        return []
    return sorted(p.parent for p in models_dir.glob("*/bundle.json"))


def describe(bundle_dir: Path) -> dict:
    """Name, architecture, precision, latent dim and on-disk bytes of one bundle (read from bundle.json)."""
    meta = json.loads((bundle_dir / "bundle.json").read_text())
    sizes = {p.name: p.stat().st_size for p in bundle_dir.iterdir() if p.is_file()}
    latent_dim = meta.get("latent_dim") or (meta["latent_shape"][0] if len(meta["latent_shape"]) == 1 else None)
    return {"name": meta["name"], "path": str(bundle_dir), "architecture": meta["architecture"],
            "precision": meta["precision"], "latent_dim": latent_dim, "input": meta["input"],
            "encoder_bytes": sizes.get(meta.get("encoder", {}).get("file", "encoder.onnx")),
            "decoder_bytes": sizes.get(meta.get("decoder", {}).get("file", "decoder.onnx")),
            "bundle_bytes": sum(sizes.values()), "shipped": bundle_dir.parent.resolve() == MODELS_DIR.resolve(),
            "metrics": meta.get("metrics", {})}


# (directory suffix, precision, exporter options): int8 both ways (symmetric for TensorRT, uint8 for CPU speed)
PRECISIONS = ("fp32", "fp16", "int8", "int8u", "int4")
VARIANTS = {"fp32": ("fp32", {}), "fp16": ("fp16", {}), "int8": ("int8", {}),
            "int8u": ("int8", {"activations": "uint8"}), "int4": ("int4", {})}


def _export(model, out: Path, variant: str) -> None:
    """One bundle through the product's exporters: export_bundle (fp32/fp16), onnx_quant (int8 QDQ) or onnx_int4 (int4)."""
    created_by = "bench/bundles.py (seeded stand-in, untrained)"
    precision, options = VARIANTS[variant]
    if precision in ("fp32", "fp16"):
        from sage_ros.compression.export import export_bundle

        export_bundle(model, out, name=out.name, precision=precision, created_by=created_by)
    elif precision == "int8":
        from sage_ros.compression.onnx_quant import export_int8_bundle
        from sage_ros.data import load_split

        calibration = load_split(model.image_size, "val")[:32]  # real crops; never the test split
        export_int8_bundle(model, out, name=out.name, calibration_images=calibration, created_by=created_by,
                           calibration_source="bundled val split, 32 images", **options)
    else:
        from sage_ros.compression.onnx_int4 import export_int4_bundle

        export_int4_bundle(model, out, name=out.name, created_by=created_by)


def export_stand_ins(out_root: Path = SCRATCH, precisions=PRECISIONS, models=STAND_INS) -> list[Path]:
    """Export seeded models as bundles under out_root (skipped when already there); returns their dirs.
    A precision whose exporter fails is reported and skipped: the other bundles are still benchmarked."""
    import torch

    from sage_ros.models import build_model

    dirs = []
    for architecture, latent_dim in models:
        for precision in precisions:
            suffix = "int8-uint8act" if precision == "int8u" else precision
            out = out_root / f"{architecture.lower()}-{latent_dim}-{suffix}-seeded"
            if not (out / "bundle.json").exists():
                torch.manual_seed(0)
                model = build_model(architecture, latent_dim).eval()
                try:
                    _export(model, out, precision)
                except Exception as exc:  # noqa: BLE001 - one failing exporter must not stop the benchmark
                    print(f"stand-in {out.name}: export failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                    continue
            dirs.append(out)
    return dirs


def bundles_for_bench(quick: bool = False) -> list[Path]:
    """Shipped bundles when there are any, else seeded stand-ins (quick: only TinyVAE fp32)."""
    shipped = discover()
    if shipped:
        return shipped[:1] if quick else shipped
    if quick:
        return export_stand_ins(precisions=("fp32",), models=STAND_INS[:1])
    return export_stand_ins()


# The encoder nodes' default bundles (sage_ros/ros/encoder_node.py PRESETS): node-level figures use these when
# they are shipped, since that is what `ros2 run sage_ros tinyvae_encoder` runs.
from sage_ros.ros.params import DEFAULT_BUNDLES  # noqa: E402 (pure data, no rclpy)

NODE_DEFAULTS = {"TinyVAE": DEFAULT_BUNDLES["tinyvae"], "VisionPuzzleVAE": DEFAULT_BUNDLES["puzzle"]}


def pick(architecture: str, quick: bool = False) -> Path | None:
    """One bundle of `architecture` for node-level runs: the node's default bundle if shipped, else a shipped
    fp32 one, else any shipped one, else the seeded fp32 stand-in."""
    shipped = [d for d in discover() if describe(d)["architecture"] == architecture]
    if shipped:
        by_name = {d.name: d for d in shipped}
        default = by_name.get(NODE_DEFAULTS.get(architecture, ""))
        fp32 = [d for d in shipped if describe(d)["precision"] == "fp32"]
        return default or (fp32 or shipped)[0]
    models = [m for m in STAND_INS if m[0] == architecture]
    stand_ins = export_stand_ins(precisions=("fp32",), models=models) if models else []
    return stand_ins[0] if stand_ins else None


def find_metric(metrics, key: str):
    """The first value named `key` anywhere in a (nested) metrics dict, or None."""
    if isinstance(metrics, dict):
        if key in metrics and not isinstance(metrics[key], dict):
            return metrics[key]
        for value in metrics.values():
            found = find_metric(value, key)
            if found is not None:
                return found
    return None
