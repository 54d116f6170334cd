"""Shared by the issue-13 capacity probes (decoder_capacity_probe.py, encoder_capacity_probe.py): the training
recipe they share and the table that sets a probe's val curve beside its reference run's."""
from __future__ import annotations

import json
from pathlib import Path

from sage_ros.compression.train import TrainConfig


def probe_config(steps: int) -> TrainConfig:
    """The shipped TinyVAE-family recipe (beta 0.001, EMA 0.999, one thread), a val point every 500 steps."""
    return TrainConfig(steps=steps, eval_every=500, beta=0.001, ema=0.999, threads=1, progress_bar=False,
                       checkpoint_every=500)


def best_val_psnr(point: dict) -> float:
    """The better of the EMA and the raw weights' val PSNR at a curve point (raw only in EMA runs)."""
    return max(point["val_psnr"], point.get("val_psnr_raw", point["val_psnr"]))


def comparison_rows(run_dir: Path, ref_dir: Path, key: str, header: str) -> list[str]:
    """Markdown table rows: the two runs' val PSNR at every `key` value (step or images_seen) both curves have.
    `header` names the columns: '| <key> | <probe> | <reference> | difference |'."""
    ours = json.loads((run_dir / "curve.json").read_text())["points"]
    ref = {p[key]: p for p in json.loads((ref_dir / "curve.json").read_text())["points"]}
    rows = [header, "|---|---|---|---|"]
    for point in ours:
        if point[key] in ref:
            a, b = best_val_psnr(point), best_val_psnr(ref[point[key]])
            rows.append(f"| {point[key]:,} | {a:.2f} | {b:.2f} | {a - b:+.2f} |")
    return rows
