#!/usr/bin/env python3
"""TRAIN stage of the shipped-model pipeline (the GPU half). Produces trained weights, nothing else.

    PYTHONPATH=. python3 scripts/train_stage.py --device cuda --out "$OUT"            # the real budget
    PYTHONPATH=. .venv/bin/python scripts/train_stage.py --budget tiny --device cpu   # smoke test here

Runs, as `python -m sage_ros.cli ...` subprocesses so that every exact command is recorded:
  1. TinyVAE at L in {4, 8, 16, 32, 64}, same budget each  -> runs/ship/ablate/L{n}/   (sage-ros ablate --train-only)
  2. StandardVAE teacher -> TinyVAE32 student + baseline    -> runs/ship/distill/{teacher,student,baseline}/
  3. VisionPuzzleVAE (L=64, 10 codes)                        -> runs/ship/puzzle/
Needs only torch, numpy, cv2, safetensors, tqdm, yaml (no rosbags / rclpy / scikit-image). If
data_cache/crops is missing but data_cache/sources is there (carry it: 21 MB), the crops are rebuilt first
(`python -m sage_ros.data.fetch --from-sources`, numpy + cv2 only).

With --out, each stage's run tree (minus checkpoint.pt files, which hold optimizer state) is packed as soon
as the stage ends, as <stage>.tar.gz split into parts of at most 15 MB (<stage>.tar.gz.part-aa, -ab, ...),
and train_stage.json (commands, wall times, images/s, versions) is rewritten after every stage.
Stages run most-important first (TinyVAE sweep, puzzle, distill), so a run cut short keeps the earlier ones.
Reassemble (6 files at the full budget: the teacher alone is 35 MB) with
    for s in tinyvae_ablation puzzle distill; do cat $s.tar.gz.part-* | tar -xz; done   # -> runs/ship/...
and continue with scripts/export_stage.sh on a CPU machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PART_BYTES = 15 * 2 ** 20
STAGE_DIRS = {"tinyvae_ablation": "ablate", "puzzle": "puzzle", "distill": "distill"}

# Budgets in optimizer steps (batch sizes per process). "full" is sized for <= ~8 min on one H100 with
# the bundled data (12,000 train crops at 64 px, 24,000 at 32 px, 3,000 at 224 px); "tiny" is the CPU smoke test.
BUDGETS = {
    "full": {"tinyvae_steps": 4000, "tinyvae_batch": 256, "teacher_steps": 4000, "student_steps": 4000,
             "distill_batch": 256, "puzzle_steps": 2500, "puzzle_batch": 64, "limit": None, "lr": 2e-3},
    "tiny": {"tinyvae_steps": 3, "tinyvae_batch": 8, "teacher_steps": 2, "student_steps": 3,
             "distill_batch": 8, "puzzle_steps": 2, "puzzle_batch": 4, "limit": 64, "lr": 2e-3},
}


def commands(b: dict, device: str, root: Path, latents: list[int]) -> list[tuple[str, list[str]]]:
    common = ["--device", device, "--lr", str(b["lr"]), "--no-progress", "--checkpoint-every", "500"]
    if b["limit"]:
        common += ["--limit", str(b["limit"])]
    cli = [sys.executable, "-m", "sage_ros.cli"]
    return [  # most important first: a run cut short by the device time limit still returns the earlier ones
        ("tinyvae_ablation", [*cli, "ablate", "--train-only", "--run-dir", str(root / "ablate"),
                              "--latents", *map(str, latents), "--steps", str(b["tinyvae_steps"]),
                              "--batch-size", str(b["tinyvae_batch"]), "--beta", "1.0", *common]),
        ("puzzle", [*cli, "train", "--arch", "VisionPuzzleVAE", "--run-dir", str(root / "puzzle"),
                    "--steps", str(b["puzzle_steps"]), "--batch-size", str(b["puzzle_batch"]), *common]),
        ("distill", [*cli, "distill", "--run-dir", str(root / "distill"), "--steps", str(b["student_steps"]),
                     "--teacher-steps", str(b["teacher_steps"]), "--batch-size", str(b["distill_batch"]), *common]),
    ]


def ensure_data(log) -> None:
    crops = REPO / "data_cache" / "crops"
    if os.environ.get("SAGE_ROS_DATA") or (crops / "64_train.npy").exists():
        return
    if not (REPO / "data_cache" / "sources").is_dir():
        sys.exit("no data_cache/crops and no data_cache/sources: run `make data` (or carry data_cache/sources)")
    cmd = [sys.executable, "-m", "sage_ros.data.fetch", "--out", str(REPO / "data_cache"), "--from-sources"]
    log({"stage": "data", "command": shlex.join(cmd)})
    subprocess.run(cmd, cwd=REPO, check=True)


def pack(root: Path, stage: str, out: Path) -> list[str]:
    """<root>/<stage dir> without checkpoints -> <stage>.tar.gz.part-aa, -ab, ... (each <= PART_BYTES)."""
    out.mkdir(parents=True, exist_ok=True)
    source = root / STAGE_DIRS[stage]
    base = root.parent.parent if root.is_relative_to(REPO) else root.parent  # keep runs/ship/... paths
    archive = out / f"{stage}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname=str(source.relative_to(base)),
                filter=lambda info: None if info.name.endswith("checkpoint.pt") else info)
    data, parts = archive.read_bytes(), []
    for n, i in enumerate(range(0, len(data), PART_BYTES)):
        name = f"{stage}.tar.gz.part-{chr(97 + n // 26)}{chr(97 + n % 26)}"
        (out / name).write_bytes(data[i:i + PART_BYTES])
        parts.append(name)
    archive.unlink()
    return parts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="full")
    parser.add_argument("--root", type=Path, default=REPO / "runs" / "ship", help="run tree to write")
    parser.add_argument("--out", type=Path, default=None, help="pack the results here (e.g. $OUT)")
    parser.add_argument("--latents", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--only", nargs="+", default=None, help="subset of: tinyvae_ablation distill puzzle")
    for key, value in BUDGETS["full"].items():  # per-item overrides of the chosen budget
        parser.add_argument("--" + key.replace("_", "-"), type=type(value) if value is not None else int, default=None)
    args = parser.parse_args(argv)
    budget = dict(BUDGETS[args.budget])
    budget.update({k: v for k, v in vars(args).items() if k in budget and v is not None})

    record = {"budget": args.budget, "budgets": budget, "device": args.device, "python": platform.python_version(),
              "stages": [], "wall_s": 0.0, "rates": {}}
    try:
        import torch
        record["torch"] = torch.__version__
        record["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    log = lambda entry: print(json.dumps(entry), flush=True)  # noqa: E731
    ensure_data(log)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start_all = time.perf_counter()
    for name, cmd in commands(budget, args.device, args.root, args.latents):
        if args.only and name not in args.only:
            continue
        shown = shlex.join(["PYTHONPATH=.", "python3", *cmd[1:]]).replace(str(REPO) + "/", "")
        log({"stage": name, "command": shown})
        start = time.perf_counter()
        rc = subprocess.run(cmd, cwd=REPO, env=env).returncode
        entry = {"stage": name, "command": shown, "returncode": rc, "wall_s": round(time.perf_counter() - start, 1)}
        if args.out and rc == 0:
            entry["parts"] = pack(args.root, name, args.out)
        record["stages"].append(entry)
        record["wall_s"] = round(time.perf_counter() - start_all, 1)
        record["rates"] = collect_rates(args.root)
        write_record(record, args)  # after every stage: whatever finished is described even if a later one dies
        log(entry)
        if rc != 0:
            break
    log({"done": True, "wall_s": record["wall_s"], "rates": record["rates"]})
    return 0 if all(s["returncode"] == 0 for s in record["stages"]) else 1


def write_record(record: dict, args) -> None:
    text = json.dumps(record, indent=2) + "\n"
    args.root.mkdir(parents=True, exist_ok=True)
    (args.root / "train_stage.json").write_text(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "train_stage.json").write_text(text)


def collect_rates(root: Path) -> dict:
    """images/s and held-out PSNR of every run under root (from their report.json)."""
    rates = {}
    for report in sorted(root.glob("**/report.json")):
        r = json.loads(report.read_text())
        if "images_per_s" in r:
            rates[str(report.parent.relative_to(root))] = {
                "images_per_s": r["images_per_s"], "train_time_s": r["train_time_s"], "steps": r["steps"],
                "psnr": r["metrics"]["psnr"]}
    return rates


if __name__ == "__main__":
    sys.exit(main())
