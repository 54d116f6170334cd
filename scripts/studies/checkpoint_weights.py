#!/usr/bin/env python3
"""Write the weights of a running (or stopped) training run's checkpoint.pt as a run directory that `export`,
`evaluate` and lofo_check.py read: <out>/model.safetensors + model.json. Measures a run mid-way without stopping it.

    PYTHONPATH=. .venv/bin/python scripts/studies/checkpoint_weights.py runs/x --arch TinyVAE --out runs/x_now [--raw]

By default the EMA weights (when the run keeps an EMA), else the raw ones; --raw takes the raw weights.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--arch", required=True, help="the run's architecture (the checkpoint does not record it)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--raw", action="store_true", help="the raw weights even when the run keeps an EMA")
    args = parser.parse_args(argv)

    from sage_ros.compression.checkpoints import CHECKPOINT_FILE, load_checkpoint, save_model
    from sage_ros.models import build_model

    state = load_checkpoint(args.run_dir / CHECKPOINT_FILE)
    if state is None:
        print(f"no checkpoint in {args.run_dir}", file=sys.stderr)
        return 2
    weights = state["model"]
    if "ema" in state and not args.raw:
        prefix = "module."
        weights = {k[len(prefix):]: v for k, v in state["ema"].items() if k.startswith(prefix)}
    latent_of = weights.get("fc_mu.weight", weights.get("codebook.weight"))  # Gaussian VAEs: L x F; VQ: K x L
    arch = args.arch
    latent = int(latent_of.shape[0] if "fc_mu.weight" in weights else latent_of.shape[1])
    model = build_model(arch, latent)
    model.load_state_dict(weights, strict=True)
    save_model(model, args.out, extra={"from_checkpoint": str(args.run_dir), "step": state["step"],
                                       "weights": "raw" if args.raw or "ema" not in state else "ema"})
    print(f"{args.out}: {arch} L={latent} step {state['step']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
