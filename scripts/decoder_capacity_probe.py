"""Issue 13 probe: does decoder capacity close TinyVAE's gap to PCA + 1 dB? (not a shipped model)

TinyVAELinSkip with its conv decoder widened (64 -> 128 -> 64 -> 3 channels instead of 64 -> 32 -> 16 -> 3, about
9x the seed decoder's multiply-adds; the encoder and latent are unchanged), trained with the same recipe as
runs/i13/lin_L{L}_b0.001 and compared with that run's val curve at equal images seen.

    .venv/bin/python scripts/decoder_capacity_probe.py --latent-dim 64 --steps 4000 --run-dir runs/s15/widedec_L64
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from torch import nn

from sage_ros.compression.train import TrainConfig, train
from sage_ros.models import ARCHITECTURES, TinyVAELinSkip


class WideDecoderLinSkip(TinyVAELinSkip):
    def __init__(self, latent_dim: int = 64):
        super().__init__(latent_dim)
        last = nn.ConvTranspose2d(64, 3, 3, stride=2, padding=1, output_padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)  # starts as the linear (PCA) path alone, like TinyVAELinSkip
        self.decoder = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(64, 128, 3, stride=2, padding=1, output_padding=1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(128, 64, 3, stride=2, padding=1, output_padding=1), nn.ReLU(inplace=True),
            last)


# A probe, not a shipped architecture: registered for this process only, so the training and evaluation code
# (which checks architectures by name) takes it; its run directory loads only where this script has run.
ARCHITECTURES["WideDecoderLinSkip"] = WideDecoderLinSkip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--latent-dim", type=int, default=64)
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--reference", type=Path, default=None, help="default: runs/i13/lin_L<latent>_b0.001")
    args = p.parse_args(argv)
    cfg = TrainConfig(steps=args.steps, eval_every=500, beta=0.001, ema=0.999, threads=1, progress_bar=False,
                      checkpoint_every=500)
    train(WideDecoderLinSkip(args.latent_dim), cfg, args.run_dir)
    ref_dir = args.reference or Path(f"runs/i13/lin_L{args.latent_dim}_b0.001")
    ours = json.loads((args.run_dir / "curve.json").read_text())["points"]
    ref = {p["images_seen"]: p for p in json.loads((ref_dir / "curve.json").read_text())["points"]}
    rows = ["| images seen | wide decoder val PSNR | TinyVAELinSkip val PSNR | difference |", "|---|---|---|---|"]
    for point in ours:
        r = ref.get(point["images_seen"])
        if r:
            best = lambda q: max(q["val_psnr"], q.get("val_psnr_raw", q["val_psnr"]))  # noqa: E731
            rows.append(f"| {point['images_seen']:,} | {best(point):.2f} | {best(r):.2f} | "
                        f"{best(point) - best(r):+.2f} |")
    (args.run_dir / "probe.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
