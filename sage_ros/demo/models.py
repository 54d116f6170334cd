"""Which bundles the demo runs (found by their bundle.json), their real file sizes, one encoder run per model."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .common import RAW_TOPIC, REPO, TINYVAE_PRECISIONS, UNTRAINED_MARK, DemoError

TINYVAE_FAMILY = ("TinyVAE", "TinyVAELinSkip")  # same interface: flat Gaussian latents from 64x64 frames


# --- models ----------------------------------------------------------------------------------------------------

@dataclass
class DemoModels:
    tinyvae: dict  # precision -> Bundle, same architecture and latent size
    puzzle: object | None  # Bundle or None
    found: list = field(default_factory=list)  # every valid bundle in the directory (for the size table)


def is_untrained(bundle) -> bool:
    note = json.dumps(bundle.meta.get("metrics", {})).lower()
    return UNTRAINED_MARK in bundle.name.lower() or UNTRAINED_MARK in note


def find_models(models_dir: Path) -> DemoModels:
    """The bundles the demo runs, found by their bundle.json: the fp32 / int8 / int4 set of the node's default
    TinyVAE-family bundle (sage_ros.ros.params.DEFAULT_BUNDLES) when it is there, else the TinyVAE-family latent
    size with the most of them (largest latent on a tie), and one VisionPuzzleVAE (fp32 preferred)."""
    from sage_ros.runtime.bundle import BundleError, load_bundle

    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise DemoError(f"models directory {models_dir} does not exist: ship the trained bundles there, or pass "
                        "--models DIR (e.g. untrained test bundles: python test/demo_helpers.py /tmp/demo_models)")
    bundles = []
    for meta_path in sorted(models_dir.glob("*/bundle.json")):
        try:
            bundles.append(load_bundle(meta_path.parent))
        except BundleError as err:
            print(f"sage-ros demo: skipping {meta_path.parent}: {err}", file=sys.stderr)
    by_size: dict[tuple, dict] = {}  # (architecture, latent shape) -> precision -> bundle
    for bundle in bundles:
        if bundle.architecture in TINYVAE_FAMILY and bundle.precision in TINYVAE_PRECISIONS:
            by_size.setdefault((bundle.architecture, bundle.latent_shape), {}).setdefault(bundle.precision, bundle)
    if not by_size:
        raise DemoError(f"no TinyVAE bundle (fp32 / int8 / int4) under {models_dir}; found "
                        f"{[b.name for b in bundles] or 'no valid bundles'}. Pass --models DIR (untrained test bundles for "
                        "the plumbing: python test/demo_helpers.py /tmp/demo_models)")
    from sage_ros.ros.params import DEFAULT_BUNDLES  # pure data (no rclpy)
    with_default = [v for v in by_size.values() if any(b.name == DEFAULT_BUNDLES["tinyvae"] for b in v.values())]
    tinyvae = with_default[0] if with_default else max(
        by_size.items(), key=lambda item: (len(item[1]), "fp32" in item[1], item[0][1]))[1]
    puzzles = sorted((b for b in bundles if b.is_vq), key=lambda b: (b.precision != "fp32", b.name))
    return DemoModels({p: tinyvae[p] for p in TINYVAE_PRECISIONS if p in tinyvae}, puzzles[0] if puzzles else None,
                      bundles)


def size_table(bundles: list) -> list[dict]:
    """Every bundle's real ONNX bytes, and the ratio to the fp32 bundle of the same architecture and latent."""
    fp32 = {(b.architecture, b.latent_shape): bundle_bytes(b)["onnx_total"] for b in bundles if b.precision == "fp32"}
    rows = []
    for bundle in sorted(bundles, key=lambda b: (b.architecture, b.latent_shape, b.name)):
        sizes = bundle_bytes(bundle)
        reference = fp32.get((bundle.architecture, bundle.latent_shape))
        rows.append({"model": bundle.name, "architecture": bundle.architecture, "precision": bundle.precision,
                     "latent_shape": list(bundle.latent_shape), **sizes,
                     "onnx_ratio_vs_fp32": round(reference / sizes["onnx_total"], 2) if reference else None})
    return rows


def bundle_bytes(bundle) -> dict:
    """Real file sizes: the two ONNX graphs (what a robot loads) and every other file of the bundle."""
    files = {path.name: path.stat().st_size for path in sorted(bundle.path.iterdir()) if path.is_file()}
    onnx = files.get(bundle.encoder_path.name, 0) + files.get(bundle.decoder_path.name, 0)
    return {"encoder_onnx": files.get(bundle.encoder_path.name, 0), "decoder_onnx": files.get(bundle.decoder_path.name, 0),
            "onnx_total": onnx, "all_files": sum(files.values())}


def default_models_dir() -> Path:
    """Where the encoder node looks for bundles by name (installed share/, then the checkout): the first that
    holds any bundle, else the checkout's models/ (so the error names the directory a user expects)."""
    dirs = []
    try:
        from ament_index_python.packages import get_package_share_directory

        dirs.append(Path(get_package_share_directory("sage_ros")) / "models")
    except (ImportError, LookupError, OSError):  # not installed / no AMENT_PREFIX_PATH (a pip venv)
        pass
    dirs.append(REPO / "models")
    return next((d for d in dirs if any(d.glob("*/bundle.json"))), REPO / "models")


@dataclass
class EncoderRun:
    """One encoder node of a replay: which bundle, which node name, where its output goes."""
    node_name: str
    preset: str  # "tinyvae" | "puzzle"
    bundle: object  # runtime Bundle
    output_topic: str

    @property
    def default_output(self) -> str:
        return RAW_TOPIC.rsplit("/", 1)[0] + ("/puzzle" if self.preset == "puzzle" else "/latent")


def demo_encoders(models: DemoModels) -> list[EncoderRun]:
    runs = [EncoderRun(f"tinyvae_{p}", "tinyvae", b, f"/camera/tinyvae_{p}/latent") for p, b in models.tinyvae.items()]
    if models.puzzle is not None:
        runs.append(EncoderRun(f"puzzle_{models.puzzle.precision}", "puzzle", models.puzzle, "/camera/puzzle"))
    return runs
