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
    from sage_ros.compression.optim import make_ema
    from sage_ros.models import build_model

    state = load_checkpoint(args.run_dir / CHECKPOINT_FILE)
    if state is None:
        print(f"no checkpoint in {args.run_dir}", file=sys.stderr)
        return 2
    weights = state["model"]  # Gaussian VAEs: fc_mu is L x F; the VQ model's codebook K x L
    latent = int(weights["fc_mu.weight"].shape[0] if "fc_mu.weight" in weights
                 else weights["codebook.weight"].shape[1])
    model = build_model(args.arch, latent)
    model.load_state_dict(weights, strict=True)
    use_ema = "ema" in state and not args.raw
    if use_ema:  # the checkpoint keeps the whole AveragedModel state (train.py); its decay does not matter to load
        ema = make_ema(model, 0.999)
        ema.load_state_dict(state["ema"])
        model = ema.module
    save_model(model, args.out, extra={"from_checkpoint": str(args.run_dir), "step": state["step"],
                                       "weights": "ema" if use_ema else "raw"})
    print(f"{args.out}: {args.arch} L={latent} step {state['step']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
