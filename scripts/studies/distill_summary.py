#!/usr/bin/env python3
"""Distillation over seeds: mean and spread of the distilled TinyVAE32 student and of the same student trained
without the teacher, beside PCA-64 at 32 px (fit on the training crops), on the held-out test crops and on
windows of many sizes from the test sources (as the node sees frames).

    .venv/bin/python scripts/studies/distill_summary.py --out models/reports/tinyvae/distill runs/i13/distill_s0 runs/i13/distill_s1

Each argument is a `sage-ros distill` run directory (student/ and baseline/ inside, same teacher). Writes
summary.json and summary.md into --out.
"""
import argparse
import json
import statistics
from pathlib import Path

import numpy as np
import torch

from sage_ros.atomic import atomic_write_json, atomic_write_text
from sage_ros.compression.augment import held_out_views
from sage_ros.compression.checkpoints import load_model
from sage_ros.compression.evaluate import pca_baseline
from sage_ros.compression.held_out import evaluate_reconstruction
from sage_ros.data import load_split


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    views = held_out_views(32)
    views.pop("frames")  # 27 whole frames at 32 px: too few to add information beside 3,000 crops
    rows = {"student": [], "baseline": []}
    for run in args.runs:
        for name in rows:
            model = load_model(run / name)
            rows[name].append({"run": str(run), **{v: evaluate_reconstruction(model, imgs)["psnr"]
                                                   for v, imgs in views.items()}})
    train = np.asarray(load_split(32, "train"))
    pca = {v: pca_baseline(train, imgs, 64)["psnr"] for v, imgs in views.items()}
    summary = {"views": {v: len(imgs) for v, imgs in views.items()}, "pca64": pca, "rows": rows, "stats": {}}
    for name, rs in rows.items():
        for v in views:
            vals = [r[v] for r in rs]
            summary["stats"][f"{name}_{v}"] = {"mean": statistics.mean(vals), "min": min(vals), "max": max(vals),
                                               "stdev": statistics.stdev(vals) if len(vals) > 1 else None}
    # the one to ship: the best last val-curve point (chosen on val, never on the test views above)
    val = {f"{run}/{name}": json.loads((run / name / "curve.json").read_text())["points"][-1]["val_psnr"]
           for run in args.runs for name in rows if (run / name / "curve.json").is_file()}
    if val:
        summary["ship"] = {"run": max(val, key=val.get), "val_psnr": val}
    gains = [s[v] - b[v] for s, b in zip(rows["student"], rows["baseline"]) for v in ("crops",)]
    summary["distill_gain_db_crops"] = {"per_seed": gains, "mean": statistics.mean(gains)}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "summary.json", summary)
    lines = ["# Distillation over seeds: TinyVAE32 student with and without the StandardVAE teacher", "",
             f"{len(args.runs)} seeds; PSNR (dB) on the held-out test crops ({summary['views']['crops']}) and "
             f"windows ({summary['views']['windows']}) at 32 px; PCA-64 fit on the 32 px training crops.", "",
             "| model | crops mean | crops min..max | windows mean | windows min..max |", "|---|---|---|---|---|"]
    for name in rows:
        c, w = summary["stats"][f"{name}_crops"], summary["stats"][f"{name}_windows"]
        lines.append(f"| {name} | {c['mean']:.2f} | {c['min']:.2f}..{c['max']:.2f} | {w['mean']:.2f} | "
                     f"{w['min']:.2f}..{w['max']:.2f} |")
    lines.append(f"| PCA-64 | {pca['crops']:.2f} | | {pca['windows']:.2f} | |")
    lines += ["", f"Distillation minus no-teacher, per seed (crops): "
                  f"{', '.join(f'{g:+.2f}' for g in gains)} dB (mean {summary['distill_gain_db_crops']['mean']:+.2f})."]
    if "ship" in summary:
        lines += ["", f"Shipped as the TinyVAE32 bundle: `{summary['ship']['run']}` (best last val-curve PSNR of the "
                      "runs above)."]
    atomic_write_text(args.out / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
