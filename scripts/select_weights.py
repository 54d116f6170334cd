#!/usr/bin/env python3
"""Re-pick raw vs EMA weights of a finished run from its held-out curve (train.ema_pays), for runs trained
before `fit` made that choice itself (it used to keep the EMA weights unconditionally).

    .venv/bin/python scripts/select_weights.py runs/i13/seed_L8_b0.001 [...]

Reads curve.json and checkpoint.pt; if the raw weights beat the EMA on the last val point, rewrites
model.safetensors / model.json / report.json / report.md / metrics.json with the raw weights and their
held-out test metrics (atomic writes). Prints what it chose.
"""
import json
import sys
from pathlib import Path

import torch

from sage_ros.atomic import atomic_write_json, atomic_write_text
from sage_ros.compression.checkpoints import load_checkpoint, load_model, read_meta, save_model
from sage_ros.compression.datasets import load_images
from sage_ros.compression.held_out import evaluate_reconstruction
from sage_ros.compression.optim import ema_pays
from sage_ros.compression.train_report import report_markdown


def select(run_dir: Path) -> str:
    report = json.loads((run_dir / "report.json").read_text())
    points = json.loads((run_dir / "curve.json").read_text())["points"]
    if report.get("weights") in ("raw", "ema") or ema_pays(points):
        return f"{run_dir}: keeps {report.get('weights', 'ema')} weights"
    model = load_model(run_dir)
    model.load_state_dict(load_checkpoint(run_dir / "checkpoint.pt")["model"])
    model.eval()
    test = load_images(report["config"]["data"], model.image_size, "test", path=report["config"]["data_path"])
    report["metrics"] = evaluate_reconstruction(model, test)
    report["weights"] = "raw"
    meta = read_meta(run_dir)
    extra = {k: v for k, v in meta.items() if k not in ("format", "architecture", "latent_dim", "image_size",
                                                       "input_range")}
    extra["train"] = report
    save_model(model, run_dir, extra)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["held_out_torch"] = report["metrics"]
    atomic_write_json(run_dir / "metrics.json", metrics)
    atomic_write_json(run_dir / "report.json", report)
    atomic_write_text(run_dir / "report.md", report_markdown(report))
    return (f"{run_dir}: raw weights (val {points[-1]['val_psnr_raw']:.2f} dB > EMA {points[-1]['val_psnr']:.2f}); "
            f"test PSNR {report['metrics']['psnr']:.2f} dB")


if __name__ == "__main__":
    torch.set_num_threads(1)
    for arg in sys.argv[1:]:
        print(select(Path(arg)))
