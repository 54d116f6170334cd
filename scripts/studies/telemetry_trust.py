"""What `trust` (SAGE's formula, runtime/telemetry.py) says with the shipped TinyVAE weights: telemetry computed as
the encoder node computes it (onnxruntime, mu-path decode) for frames the model was trained on, held-out frames,
and frames no camera should send (noise, a covered lens, black, white). Writes a markdown table and a JSON file.

    python scripts/studies/telemetry_trust.py --out models/reports/telemetry_trust [--models tinyvae_l64_fp32 tinyvae_l8_fp32]

Needs `make data` (data_cache: the 64 px crops and the source photos of the test split, the vtest bag).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from sage_ros.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from sage_ros.runtime import telemetry as T  # noqa: E402
from sage_ros.runtime.backends import make_backend  # noqa: E402
from sage_ros.runtime.bundle import load_bundle  # noqa: E402
from sage_ros.runtime.preprocess import Preprocessor  # noqa: E402

SEED = 21


def conditions(root: Path) -> dict[str, tuple[str, list[np.ndarray]]]:
    """name -> (what it is, frames as uint8 RGB of any size; the node's `resize` crop makes them 64 px)."""
    from sage_ros.data import load_split, splits_info, vtest_bag_path
    from sage_ros.data.crops import read_rgb
    from sage_ros.data.rosbag import iter_bag_images

    rng = np.random.default_rng(SEED)
    groups = splits_info(root)["groups"]
    manifest = json.loads((root / "sources" / "manifest.json").read_text())
    photos = [read_rgb(root / "sources" / f["file"]) for f in manifest["files"]
              if f["kind"] == "photo" and groups.get(f["group"]) == "test"]
    camera = [frame for _, frame in iter_bag_images(vtest_bag_path(root), "/camera/image_raw", stride=4)]
    covered = [np.clip(rng.normal(6, 3, (480, 640, 3)), 0, 255).astype(np.uint8) for _ in range(50)]
    return {
        "train crops": ("64 px crops the model trained on (data_cache 64_train, first 1000)",
                        list(load_split(64, "train", root, mmap=True)[:1000])),
        "held-out crops": ("64 px crops of the test split, cut as training crops are (64_test, 1500)",
                           list(load_split(64, "test", root, mmap=True))),
        "held-out photos": (f"the {len(photos)} test-split photos, whole frame resized (crop_mode resize)", photos),
        "held-out camera": (f"vtest.avi frames 0-199 (test split), every 4th ({len(camera)}), whole frame resized",
                            camera),
        "gaussian noise": ("model input of i.i.d. N(128, 64) grey levels per channel, clipped (200)",
                           [np.clip(rng.normal(128, 64, (64, 64, 3)), 0, 255).astype(np.uint8) for _ in range(200)]),
        "covered lens": ("640x480 frames of N(6, 3) grey levels (a capped lens: dark sensor noise), resized (50)",
                         covered),
        "black frame": ("all 0", [np.zeros((480, 640, 3), np.uint8)]),
        "white frame": ("all 255", [np.full((480, 640, 3), 255, np.uint8)]),
    }


def measure(bundle_dir: Path, frames: list[np.ndarray], batch: int = 100) -> dict[str, np.ndarray]:
    bundle = load_bundle(bundle_dir)
    rows = []
    with make_backend(bundle, "onnxruntime", "cpu", intra_op_threads=1) as backend:
        preprocess = Preprocessor.from_bundle(bundle, "resize")
        for start in range(0, len(frames), batch):
            chunk = [np.ascontiguousarray(f) for f in frames[start:start + batch]]
            prepared = preprocess.prepare(chunk)
            outputs = backend.encode(prepared.batch)
            rows += T.batch_telemetry(backend, prepared, outputs, frames_hw=[f.shape[:2] for f in chunk])
    keys = ("trust", "recon_mse", "recon_psnr_db", "kl_per_dim", "input_std")
    return {key: np.array([row[key] for row in rows]) for key in keys}


def summary(values: np.ndarray) -> dict[str, float]:
    return {"median": float(np.median(values)), "p10": float(np.percentile(values, 10)),
            "p90": float(np.percentile(values, 90)), "n": int(values.size)}


def table(results: dict, descriptions: dict) -> str:
    lines = []
    for model, by_condition in results.items():
        lines += [f"### {model}", "",
                  "| frames | n | trust median [p10, p90] | recon_mse median | PSNR dB median | kl_per_dim median "
                  "| input_std median |", "|---|---|---|---|---|---|---|"]
        for name, stats in by_condition.items():
            t = stats["trust"]
            lines.append(f"| {name} | {t['n']} | {t['median']:.3f} [{t['p10']:.3f}, {t['p90']:.3f}] | "
                         f"{stats['recon_mse']['median']:.4f} | {stats['recon_psnr_db']['median']:.1f} | "
                         f"{stats['kl_per_dim']['median']:.2f} | {stats['input_std']['median']:.3f} |")
        lines.append("")
    lines += ["Frames:", ""] + [f"- {name}: {text}" for name, text in descriptions.items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "models" / "reports" / "telemetry_trust",
                        help="writes OUT.md and OUT.json")
    parser.add_argument("--models", nargs="+", default=["tinyvae_l64_fp32", "tinyvae_l8_fp32"])
    parser.add_argument("--data", type=Path, default=None, help="data_cache directory (default: the package's)")
    args = parser.parse_args()
    from sage_ros.data import data_root

    root = args.data or data_root()
    cases = conditions(root)
    results = {}
    for model in args.models:
        results[model] = {}
        for name, (_, frames) in cases.items():
            results[model][name] = {key: summary(v) for key, v in measure(REPO / "models" / model, frames).items()}
            print(f"{model} {name}: trust {results[model][name]['trust']['median']:.3f}", flush=True)
    descriptions = {name: text for name, (text, _) in cases.items()}
    text = ("Telemetry's trust = clamp(0.5 max(0, 1 - 10 recon_mse) + 0.5 / (1 + kl_per_dim), 0, 1) on the shipped "
            "bundles (onnxruntime CPU, mu-path decode, crop_mode resize), made by `python scripts/studies/telemetry_trust.py`."
            "\n\n" + table(results, descriptions))
    atomic_write_text(args.out.with_suffix(".md"), text)
    atomic_write_json(args.out.with_suffix(".json"), {"command": "python scripts/studies/telemetry_trust.py",
                                                      "frames": descriptions, "results": results})
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
