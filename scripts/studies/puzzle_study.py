"""Issue 9 study for VisionPuzzleVAE: the codebook sweep (short runs, chosen on the val split), the long run, and
the summary (tables + curve against the palette baseline) that models/reports/puzzle/README.md is made from.

    .venv/bin/python scripts/studies/puzzle_study.py run --root runs/p9 [--only s1_old s3_grad_km ...]
    .venv/bin/python scripts/studies/puzzle_study.py summarize --root runs/p9 --out models/reports/puzzle

Every run is `sage-ros train --model VisionPuzzleVAE` on the online-augmented bundled training stream (fresh
random-resized crops of the training-split sources every batch), batch 16, lr 2e-3, 1 CPU thread, with a
held-out curve on the first --eval-images val crops. Choices are made on val; the test split is only reported.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMMON = ["--model", "VisionPuzzleVAE", "--batch-size", "16", "--lr", "0.002", "--threads", "1", "--no-progress",
          "--device", "cpu", "--checkpoint-every", "100"]
SHORT = ["--eval-every", "100", "--eval-images", "128"]


def codebook(ema: str, restart: str = "0.03", init: str = "kmeans", beta: str = "0.25") -> list[str]:
    """The VQ codebook options every run sets (sage-ros train --vq-*)."""
    return ["--vq-ema", ema, "--vq-restart", restart, "--vq-init", init, "--vq-beta", beta]


def long_curve(every: str) -> list[str]:
    """Held-out curve of a long run: every `every` steps on the first 256 val crops."""
    return ["--eval-every", every, "--eval-images", "256"]


# name: (steps, what it tests, options)
RUNS = {
    "s1_old": (300, "codebook by gradient (van den Oord loss), init = random encoder outputs of batch 1 (the "
                    "shipped recipe)", codebook("0", restart="0", init="sample")),
    "s2_ema": (300, "EMA k-means codebook (decay 0.99) + k-means init + dead-code restarts", codebook("0.99")),
    "s3_grad_km": (200, "codebook by gradient + k-means init + dead-code restarts", codebook("0")),
    "s5_beta1": (100, "s3 with commitment weight 1.0", codebook("0", beta="1.0")),
    "s6_beta005": (100, "s3 with commitment weight 0.05", codebook("0", beta="0.05")),
    "long": (1500, "s3's recipe (gradient codebook) to the end of a cosine schedule, 24,000 images: val flat from "
                   "step 800 (12,800 images) on", codebook("0") + long_curve("200")),
    "long2": (2400, "the same recipe planned for 38,400 images, cancelled at step 990 once `long` had shown the "
                    "plateau (its curve repeats long's)", codebook("0") + long_curve("200")),
    "ema_long": (900, "s2's EMA codebook (decay 0.99) + k-means init + restarts, 14,400 images to the end of its "
                      "cosine schedule (best final val of the first eight runs; shipped before ema_xl)",
                 codebook("0.99") + long_curve("150")),
    "ema_xl": (5000, "**the shipped run**: ema_long's recipe run 5.6x longer, 80,000 images to the end of its cosine "
                     "schedule on a core of its own; val flat (within +-0.1 dB) over its last 24,000 images",
               codebook("0.99") + long_curve("500")),
    "soft": (800, "s3's recipe with straight-through softmax code gradients (--vq-soft 0.1), a last try at the "
                  "palette gap (800 steps: all the time left)", codebook("0") + ["--vq-soft", "0.1"] + long_curve("200")),
}
LONG_RUNS = ("long", "long2", "ema_long", "ema_xl", "soft")


def command(root: Path, name: str) -> list[str]:
    steps, _, options = RUNS[name]
    extra = [] if name in LONG_RUNS else SHORT
    return [sys.executable, "-m", "sage_ros.cli", "train", *COMMON, "--run-dir", str(root / name),
            "--steps", str(steps), *extra, *options]


def run(args) -> int:
    for name in args.only or RUNS:
        cmd = command(args.root, name)
        print("+", shlex.join(cmd), flush=True)
        code = subprocess.run(cmd, cwd=REPO, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"}).returncode
        if code:
            return code
    return 0


def _points(run_dir: Path) -> list[dict]:
    path = run_dir / "curve.json"
    return json.loads(path.read_text())["points"] if path.exists() else []


def summarize(args) -> int:
    import numpy as np

    from sage_ros.atomic import atomic_write_json, atomic_write_text
    from sage_ros.compression.evaluate import palette_baseline
    from sage_ros.compression.report import plot_training_curve
    from sage_ros.data import load_split

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    train = load_split(224, "train")
    val = load_split(224, "val")
    palette = {n: palette_baseline(train, val[:n]) for n in (128, 256)}
    palette["test"] = palette_baseline(train, load_split(224, "test"))
    rows, summary = [], {"palette": {k: {m: v[m] for m in ("psnr", "ssim", "codes_used", "code_perplexity")}
                                     for k, v in palette.items()}, "runs": {}}
    for name, (steps, what, options) in RUNS.items():
        run_dir = args.root / name
        points = _points(run_dir)
        if not points:
            continue
        report = json.loads((run_dir / "report.json").read_text()) if (run_dir / "report.json").exists() else {}
        cmd = ".venv/bin/python " + shlex.join(command(args.root, name)[1:])
        summary["runs"][name] = {"what": what, "options": options, "points": points,
                                 "test": report.get("metrics"), "command": cmd}
        for p in points:
            rows.append([name, p["step"], p["images_seen"], f"{p['val_psnr']:.2f}", f"{p['val_ssim']:.4f}",
                         p["val_codes_used"], f"{p['val_code_perplexity']:.2f}",
                         f"{p.get('train_psnr', float('nan')):.2f}"])
    lines = ["# VisionPuzzleVAE: codebook study and the shipped run (issue 9)", "",
             "Made by `.venv/bin/python scripts/studies/puzzle_study.py summarize --root runs/p9 --out models/reports/puzzle` "
             "from runs made by `scripts/studies/puzzle_study.py run` (commands below). All runs: online-augmented "
             "training crops, batch 16, lr 2e-3 (warm-up + cosine), 1 CPU thread on the shared 2-core machine. "
             "Choices were made on the val split; test is only reported. Not run: an input-normalisation sweep "
             "(the design contract fixes the input to [-1, 1], and the first conv is followed by BatchNorm, which "
             "absorbs a per-channel affine rescaling of the input up to optimisation conditioning).", "",
             "## Palette baseline (same information as the 30 x 30 code grid)", "",
             "| data | PSNR dB | SSIM | palette colours used | perplexity |", "|---|---|---|---|---|"]
    for key, label in ((128, "val, first 128 (sweep curves)"), (256, "val, first 256 (long-run curve)"),
                       ("test", "test, all 400")):
        p = palette[key]
        lines.append(f"| {label} | {p['psnr']:.2f} | {p['ssim']:.4f} | {p['codes_used']} | "
                     f"{p['code_perplexity']:.2f} |")
    lines += ["", "## Runs", ""]
    for name, info in summary["runs"].items():
        lines.append(f"- `{name}`: {info['what']}. `{info['command']}`")
    lines += ["", "## Held-out curves (val)", "",
              "| run | step | images seen | val PSNR dB | val SSIM | codes used | perplexity | train-input PSNR |",
              "|---|---|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in rows]
    lines += ["", "## Test split (all 400 crops, after the last step)", "",
              "| run | steps | test PSNR dB | test SSIM | codes used | perplexity | vs palette (test) dB |",
              "|---|---|---|---|---|---|---|"]
    for name, info in summary["runs"].items():
        t = info["test"]
        if t:
            lines.append(f"| {name} | {info['points'][-1]['step']} | {t['psnr']:.2f} | {t['ssim']:.4f} | "
                         f"{t['codes_used']} | {t['code_perplexity']:.2f} | "
                         f"{t['psnr'] - palette['test']['psnr']:+.2f} |")
    for name in LONG_RUNS:
        long_points = summary["runs"].get(name, {}).get("points")
        if long_points:
            plot_training_curve(out / f"curve_{name}.png", long_points,
                                f"VisionPuzzleVAE L=64, run {name} (val: first 256)",
                                baselines={f"palette (val 256) {palette[256]['psnr']:.2f} dB": palette[256]["psnr"],
                                           "palette + 1 dB": palette[256]["psnr"] + 1.0})
            lines += ["", f"![held-out curve of {name}](curve_{name}.png)", ""]
    summary["palette"] = {k: {m: (v[m] if not isinstance(v[m], np.generic) else float(v[m]))
                              for m in ("psnr", "ssim", "codes_used", "code_perplexity")}
                          for k, v in palette.items()}
    atomic_write_json(out / "study.json", summary)
    atomic_write_text(out / "README.md", "\n".join(lines) + "\n")
    print(f"wrote {out / 'README.md'}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("run")
    p.add_argument("--root", type=Path, default=Path("runs/p9"))
    p.add_argument("--only", nargs="+", choices=sorted(RUNS))
    p = sub.add_parser("summarize")
    p.add_argument("--root", type=Path, default=Path("runs/p9"))
    p.add_argument("--out", type=Path, default=Path("models/reports/puzzle"))
    args = parser.parse_args(argv)
    return run(args) if args.verb == "run" else summarize(args)


if __name__ == "__main__":
    sys.exit(main())
