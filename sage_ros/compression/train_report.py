"""The files a finished training run leaves: model.safetensors + model.json, report.json, report.md,
metrics.json and curve.png.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from sage_ros.atomic import atomic_write_json, atomic_write_text

from .checkpoints import architecture_of, save_model


def write_run_outputs(model, run_dir, cfg, stats, metrics, job="train", extra: dict | None = None) -> None:
    """model.safetensors + model.json + report.json + report.md + metrics.json."""
    report = {"job": job, "architecture": architecture_of(model), "latent_dim": int(model.latent_dim),
              "params": sum(p.numel() for p in model.parameters()), "config": dataclasses.asdict(cfg),
              **stats, "test_split": "test", "metrics": metrics, **(extra or {})}
    save_model(model, run_dir, {"train": report})
    # small summary for `sage-ros export --metrics` (bundle.json embeds it next to its own held-out numbers)
    atomic_write_json(Path(run_dir) / "metrics.json", {
        "training": {"job": job, "steps": stats["steps"], "batch_size": stats["batch_size"],
                     "world_size": stats["world_size"], "device": cfg.device, "data": cfg.data,
                     "train_images": stats["train_images"], "images_per_s": stats["images_per_s"]},
        "held_out_torch": metrics})
    atomic_write_json(Path(run_dir) / "report.json", report)
    atomic_write_text(Path(run_dir) / "report.md", report_markdown(report))
    if stats.get("curve"):
        from .report import plot_training_curve
        plot_training_curve(Path(run_dir) / "curve.png", stats["curve"],
                            f"{job}: {architecture_of(model)} L={int(model.latent_dim)}")


def report_markdown(report: dict) -> str:
    m = report["metrics"]
    fmt = lambda v: "n/a" if v is None else (f"{v:.5g}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = [f"# {report['job']}: {report['architecture']} (latent {report['latent_dim']})", "",
             f"- parameters: {report['params']:,}",
             f"- steps: {report['steps']} x batch {report['batch_size']} x {report['world_size']} process(es), "
             f"{report['train_images']} training images, device {report['config']['device']}",
             f"- training time: {report['train_time_s']:.1f} s ({report['images_per_s']:.0f} images/s)",
             f"- final training loss: {fmt(report['final_loss'])}", "",
             f"Held-out `{report['test_split']}` split ({m['images']} images, deterministic path, [0, 1] range):", "",
             "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {fmt(v)} |" for k, v in m.items() if k != "images"]
    if report.get("curve"):
        lines += ["", f"Held-out curve (val split, {len(report['curve'])} points; curve.png, curve.json):", "",
                  "| images seen | train loss | val PSNR | train-input PSNR |", "|---|---|---|---|"]
        lines += [f"| {p['images_seen']:,} | {fmt(p['train_loss'])} | {fmt(p.get('val_psnr'))} | "
                  f"{fmt(p.get('train_psnr'))} |" for p in report["curve"]]
    return "\n".join(lines) + "\n"
