"""Cheap CPU training speed-ups, measured against plain eager fp32 in the same run (the machine is shared).

Each variant trains the same model on the same random batch for `--seconds`, interleaved with the baseline
(baseline, variant, baseline, variant, ...) so drifting load from other processes hits both alike; the ratio is
images/s of the variant over images/s of the baseline measured around it.

    .venv/bin/python bench/train_speed.py --out bench/results/train_speed.json [--model TinyVAE --latent 64]
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from sage_ros.models import build_model


def _step_fn(model, batch, compiled: bool, channels_last: bool):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    fwd = torch.compile(model) if compiled else model
    x = torch.rand(batch, 3, model.image_size, model.image_size)
    if channels_last:
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def step():
        recon, mu, logvar = fwd(x)
        loss = ((recon - x) ** 2).sum() / batch + 1e-3 * (-0.5 * (1 + logvar - mu ** 2 - logvar.exp())).sum() / batch
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def _rate(step, batch: int, seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        n += 1
    return n * batch / (time.perf_counter() - start)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="TinyVAE")
    ap.add_argument("--latent", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("bench/results/train_speed.json"))
    args = ap.parse_args()

    variants = {  # name: (threads, batch, compiled, channels_last)
        "eager 1 thread, batch 64 (baseline)": (1, 64, False, False),
        "2 threads": (2, 64, False, False),
        "channels_last": (1, 64, False, True),
        "torch.compile": (1, 64, True, False),
        "batch 256": (1, 256, False, False),
    }
    results = {}
    for name, (threads, batch, compiled, channels_last) in variants.items():
        torch.manual_seed(0)
        torch.set_num_threads(1)
        base_step = _step_fn(build_model(args.model, args.latent).train(), 64, False, False)
        torch.set_num_threads(threads)
        step = _step_fn(build_model(args.model, args.latent).train(), batch, compiled, channels_last)
        warm = time.perf_counter()
        for _ in range(3):
            step()  # compile / allocator warm-up, not timed
        warmup_s = time.perf_counter() - warm
        ratios, rates = [], []
        for _ in range(args.rounds):
            torch.set_num_threads(1)
            base = _rate(base_step, 64, args.seconds)
            torch.set_num_threads(threads)
            rate = _rate(step, batch, args.seconds)
            ratios.append(rate / base)
            rates.append((base, rate))
        results[name] = {"threads": threads, "batch": batch, "compiled": compiled, "channels_last": channels_last,
                         "images_per_s": [round(r, 1) for _, r in rates],
                         "baseline_images_per_s": [round(b, 1) for b, _ in rates],
                         "ratio_vs_baseline": round(sum(ratios) / len(ratios), 3), "warmup_s": round(warmup_s, 2)}
        print(f"{name:40s} {results[name]['ratio_vs_baseline']:.2f}x  ({results[name]['images_per_s']} img/s)")
    out = {"model": args.model, "latent": args.latent, "torch": torch.__version__, "machine": platform.machine(),
           "cpus": __import__("os").cpu_count(), "seconds_per_measure": args.seconds, "variants": results,
           "note": "ratios against eager fp32 batch 64 on one thread, measured interleaved in the same run"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
