#!/usr/bin/env python3
"""Leave-one-family-out check: the shipped models on photographs of a family no model trained on, beside the
baseline a user could fit on other photos of that family in a minute.

    PYTHONPATH=. .venv/bin/python scripts/studies/lofo_check.py --out models/reports/lofo/shipped      # the shipped bundles
    PYTHONPATH=. .venv/bin/python scripts/studies/lofo_check.py --bundle tinyvae_l8_fp32=runs/x/bundle --out /tmp/lofo

`make data` keeps one whole source family (sage_ros.data.crops.HOLDOUT_FAMILY) out of train, val and test.
Its photos are split in two halves by file (sage_ros.data.holdout.holdout_halves): PCA-L (TinyVAE, TinyVAE32) or
the 10-colour palette (VisionPuzzleVAE) is fitted on windows of the *fit* half; the model and the baseline are
measured on windows of many sizes and aspect ratios plus the whole frames of the *eval* half, every window
area-resized to the model input as the encoder node does. INT8 bundles are compared with their fp32 bundle on the
same inputs (code agreement for the puzzle). Also reported: each model on the fixed test split (`make data`).
Writes <out>.json and <out>.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

# bundle -> (baseline kind, baseline size): PCA with as many components as latent values, or the puzzle's palette
BASELINES = {
    "tinyvae_l8_fp32": ("pca", 8),
    "tinyvae_l64_fp32": ("pca", 64),
    "tinyvae32_l64_fp32": ("pca", 64),
    "tinyvae_linskip_l8_fp32": ("pca", 8),
    "tinyvae_linskip_l64_fp32": ("pca", 64),
    "tinyvae32_linskip_l64_fp32": ("pca", 64),
    "puzzle_l64_fp32": ("palette", 10),
}
PAIRS = {"puzzle_l64_int8_cpu": "puzzle_l64_fp32", "tinyvae_l64_int8_cpu": "tinyvae_l64_fp32",  # candidate -> fp32
         "tinyvae_linskip_l64_int8": "tinyvae_linskip_l64_fp32"}
N_FIT = {32: 4000, 64: 2000, 224: 300}   # baseline-fit windows per input size (+ the fit half's whole frames)
N_EVAL = {32: 1200, 64: 600, 224: 150}   # evaluation windows per input size (+ the eval half's whole frames)


def _psnr_rows(codec, baseline, fit, ev, whole) -> dict:
    from sage_ros.compression.evaluate import evaluate_single, palette_baseline, pca_baseline

    kind, k = baseline
    out = {}
    for label, mask in (("all", np.ones(len(ev), bool)), ("whole_frames", whole), ("windows", ~whole)):
        if not mask.any():
            continue
        images = ev[mask]
        model = evaluate_single(codec, images)
        base = pca_baseline(fit, images, k) if kind == "pca" else palette_baseline(fit, images, k)
        out[label] = {"n": int(mask.sum()), "model_psnr": model["psnr"], "model_ssim": model["ssim"],
                      "baseline_psnr": base["psnr"], "baseline_ssim": base["ssim"],
                      "delta_db": model["psnr"] - base["psnr"]}
    return out


def lofo_rows(fit_images, eval_images, models: dict, pairs: dict | None = None, n_fit=None, n_eval=None,
              seed: int = 0, test_images=None) -> dict:
    """The check on given photos. models: label -> (model: nn.Module | bundle dir | codec, (kind, k)) with kind
    "pca" or "palette"; pairs: candidate label -> (candidate, reference) models compared on the same inputs;
    test_images: size -> uint8 images (the fixed test split) for a model-only PSNR. Returns {"rows", "pairs"}."""
    from sage_ros.compression.evaluate import as_codec, evaluate_pair, evaluate_single
    from sage_ros.data.holdout import family_windows

    n_fit, n_eval = n_fit or N_FIT, n_eval or N_EVAL
    cache: dict[int, tuple] = {}

    def views(size):
        if size not in cache:
            fit, _ = family_windows(fit_images, size, n_fit[size], seed=seed)
            ev, whole = family_windows(eval_images, size, n_eval[size], seed=seed + 1)
            cache[size] = (fit, ev, whole)
        return cache[size]

    rows = []
    for label, (model, baseline) in models.items():
        start = time.perf_counter()
        codec = as_codec(model, label)
        fit, ev, whole = views(codec.image_size)
        kind, k = baseline
        row = {"model": label, "size": codec.image_size, "baseline": f"PCA-{k}" if kind == "pca" else f"palette-{k}",
               "n_fit_images": len(fit_images), "n_eval_images": len(eval_images), "n_fit_windows": len(fit),
               **_psnr_rows(codec, baseline, fit, ev, whole)}
        if test_images is not None and codec.image_size in test_images:
            row["test_split_psnr"] = evaluate_single(codec, test_images[codec.image_size])["psnr"]
        row["seconds"] = round(time.perf_counter() - start, 1)
        rows.append(row)
    pair_rows = []
    for label, (candidate, reference) in (pairs or {}).items():
        cand, ref = as_codec(candidate, label), as_codec(reference, "fp32")
        _, ev, whole = views(ref.image_size)
        row = {"model": label, "size": ref.image_size}
        for part, mask in (("whole_frames", whole), ("windows", ~whole)):
            result = evaluate_pair(ref, cand, ev[mask])
            row[part] = {"n": int(mask.sum()), "psnr": result["psnr"], "fp32_psnr": result["reference"]["psnr"],
                         "delta_psnr": result["delta_psnr"], "code_agreement": result.get("code_agreement"),
                         "mu_cosine": result.get("mu_cosine")}
        pair_rows.append(row)
    return {"rows": rows, "pairs": pair_rows}


def markdown(result: dict) -> str:
    lines = [f"# Leave-one-family-out check: `{result['family']}`", "",
             f"No model trained on this family. Baselines fitted on {len(result['fit_files'])} of its photos "
             f"({', '.join(Path(f).stem for f in result['fit_files'])}); model and baseline measured on the other "
             f"{len(result['eval_files'])} ({', '.join(Path(f).stem for f in result['eval_files'])}): their whole "
             "frames plus windows of many sizes and aspect ratios, area-resized to the model input (as the node "
             "does). PSNR in dB, mean over images. Command: `" + result["command"] + "`", "",
             "| model | input | baseline | all: model | all: baseline | all: Δ dB | whole frames: model / baseline | "
             "windows: model / baseline | test split (model) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        test = f"{r['test_split_psnr']:.2f}" if "test_split_psnr" in r else "—"
        lines.append(f"| {r['model']} | {r['size']} | {r['baseline']} | {r['all']['model_psnr']:.2f} | "
                     f"{r['all']['baseline_psnr']:.2f} | {r['all']['delta_db']:+.2f} | "
                     f"{r['whole_frames']['model_psnr']:.2f} / {r['whole_frames']['baseline_psnr']:.2f} | "
                     f"{r['windows']['model_psnr']:.2f} / {r['windows']['baseline_psnr']:.2f} | {test} |")
    if result["pairs"]:
        lines += ["", "Quantized bundles against their fp32 bundle on the same inputs:", "",
                  "| bundle | part | n | PSNR (fp32) | Δ PSNR | code agreement % | latent cosine |", "|---|---|---|---|---|---|---|"]
        for r in result["pairs"]:
            for part in ("whole_frames", "windows"):
                p = r[part]
                agree = f"{p['code_agreement']:.2f}" if p["code_agreement"] is not None else "—"
                cos = f"{p['mu_cosine']:.4f}" if p["mu_cosine"] is not None else "—"
                lines.append(f"| {r['model']} | {part} | {p['n']} | {p['psnr']:.2f} ({p['fp32_psnr']:.2f}) | "
                             f"{p['delta_psnr']:+.3f} | {agree} | {cos} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=REPO / "models")
    parser.add_argument("--bundle", action="append", default=[],
                        help="LABEL=DIR: measure DIR (a bundle or a training run) with LABEL's baseline (LABEL a key of "
                             "BASELINES); repeatable. "
                             "Default: every shipped bundle in BASELINES")
    parser.add_argument("--no-pairs", action="store_true", help="skip the INT8-vs-fp32 comparisons")
    parser.add_argument("--family", default=None, help="held-out family (default: the one make data held out)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    args = parser.parse_args(argv)

    import torch

    from sage_ros.atomic import atomic_write_json, atomic_write_text
    from sage_ros.data import load_split
    from sage_ros.data.holdout import holdout_halves, load_photos

    torch.set_num_threads(1)
    fit_files, eval_files = holdout_halves(family=args.family)
    models = {}
    if args.bundle:
        for spec in args.bundle:
            label, _, path = spec.partition("=")
            source = Path(path)
            if (source / "model.json").is_file():  # a training run directory: its torch weights, no export needed
                from sage_ros.compression.checkpoints import load_model
                source = load_model(source)
            models[label] = (source, BASELINES[label.split("@")[0]])
    else:
        models = {name: (args.models_dir / name, baseline) for name, baseline in BASELINES.items()
                  if (args.models_dir / name).is_dir()}
    pairs = {} if args.no_pairs else {c: (args.models_dir / c, args.models_dir / r) for c, r in PAIRS.items()
                                      if (args.models_dir / c).is_dir() and (args.models_dir / r).is_dir()}
    test = {size: load_split(size, "test", mmap=True) for size in (32, 64)}
    result = lofo_rows(load_photos(fit_files), load_photos(eval_files), models, pairs, seed=args.seed,
                       test_images=test)
    from sage_ros.data import splits_info
    result.update(family=args.family or splits_info()["holdout_family"],
                  fit_files=[str(f.relative_to(f.parents[1])) for f in fit_files],
                  eval_files=[str(f.relative_to(f.parents[1])) for f in eval_files],
                  command="scripts/studies/lofo_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                  n_fit=N_FIT, n_eval=N_EVAL, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out.with_suffix(".json"), result)
    atomic_write_text(args.out.with_suffix(".md"), markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
