"""Pick the INT8 activation-calibration method for the shipped TinyVAE bundles without looking at the test split.

For each trained run and each INT8 graph the TinyVAE bundles ship (`symmetric`: the default export, int8 activations,
as tinyvae_l*_int8; `cpu`: `--int8-target cpu`, uint8 activations, as tinyvae_l64_int8_cpu) and calibration method, `sage-ros export --precision int8` calibrates on TRAINING crops and measures the bundle on the VAL split
(`delta_psnr` against the float torch model). The pick per (run, target) is the method with the smallest val loss;
scripts/shipping/ship_tinyvae.sh then exports the shipped bundles with it (calibrated on val, reported on test, as always).

    .venv/bin/python scripts/studies/int8_calibration_sweep.py --runs runs/i13/ablate_TinyVAE/L8 runs/i13/ablate_TinyVAE/L64 \
        --out models/reports/tinyvae/int8_calibration
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from sage_ros.atomic import atomic_write_json, atomic_write_text

# (name, export options): the three methods onnxruntime's calibrators offer, percentile at two tails
METHODS = {
    "minmax": ["--calibrate-method", "minmax"],
    "entropy": ["--calibrate-method", "entropy"],
    "percentile 99.999": ["--calibrate-method", "percentile", "--percentile", "99.999"],
    "percentile 99.99": ["--calibrate-method", "percentile", "--percentile", "99.99"],
}
TARGETS = {"symmetric": ["--int8-activations", "int8"], "cpu": ["--int8-target", "cpu"]}


def val_delta(run: Path, target: list[str], method: list[str], count: int, work: Path, extra: list[str]) -> dict:
    """Export one INT8 bundle (calibrated on training crops) and return its val-split metrics."""
    out = work / "bundle"
    cmd = [sys.executable, "-m", "sage_ros.cli", "export", "--model", str(run), "--precision", "int8", "--out", str(out),
           *target, "--calibration-split", "train", "--calibration-count", str(count), *method,
           "--evaluate", "--split", "val", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"export failed: {' '.join(cmd)}\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    metrics = json.loads((out / "bundle.json").read_text())["metrics"]
    return {"delta_psnr": metrics["delta_psnr"], "mu_cosine": metrics["mu_cosine"], "n_images": metrics["n_images"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, nargs="+", required=True, help="trained run directories")
    p.add_argument("--out", type=Path, required=True, help="writes <out>.json and <out>.md")
    p.add_argument("--calibration-count", type=int, default=256)
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    p.add_argument("--targets", nargs="+", choices=list(TARGETS), default=list(TARGETS))
    p.add_argument("--export-options", default="", help="more `sage-ros export` options, one string (tests: data)")
    args = p.parse_args(argv)
    rows = []
    for run in args.runs:
        for target in args.targets:
            for name in args.methods:
                with tempfile.TemporaryDirectory() as work:
                    row = {"run": str(run), "target": target, "method": name,
                           **val_delta(run, TARGETS[target], METHODS[name], args.calibration_count, Path(work),
                                       args.export_options.split())}
                print(f"{run} {target:9s} {name:18s} val delta {row['delta_psnr']:+.3f} dB", flush=True)
                rows.append(row)
    picks = {}
    for row in rows:
        key = f"{row['run']} {row['target']}"
        if key not in picks or row["delta_psnr"] > picks[key]["delta_psnr"]:
            picks[key] = row
    lines = ["# INT8 calibration method, chosen on the val split", "",
             f"Calibration: {args.calibration_count} training crops; measured: the val split, PSNR of the INT8 "
             "bundle (onnxruntime CPU) minus the float torch model's. Command: "
             f"`scripts/studies/int8_calibration_sweep.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
             "", "| run | target | method | val ΔPSNR (dB) | μ cosine | pick |", "|---|---|---|---|---|---|"]
    for row in rows:
        pick = "**pick**" if picks[f"{row['run']} {row['target']}"] is row else ""
        lines.append(f"| {row['run']} | {row['target']} | {row['method']} | {row['delta_psnr']:+.3f} | "
                     f"{row['mu_cosine']:.5f} | {pick} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    atomic_write_json(args.out.with_suffix(".json"), {"rows": rows, "picks": picks})
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
