"""Issue 13 probe: does decoder capacity close TinyVAE's gap to PCA + 1 dB? (not a shipped model)

TinyVAELinSkip with its conv decoder widened (64 -> 128 -> 64 -> 3 channels instead of 64 -> 32 -> 16 -> 3, about
9x the seed decoder's multiply-adds; the encoder and latent are unchanged), trained with the same recipe as
runs/i13/lin_L{L}_b0.001 and compared with that run's val curve at equal images seen.

    .venv/bin/python scripts/studies/decoder_capacity_probe.py --latent-dim 64 --steps 4000 --run-dir runs/s15/widedec_L64
"""
from __future__ import annotations

import argparse
from pathlib import Path

from torch import nn

from probe_curves import comparison_rows, probe_config
from sage_ros.compression.train import train
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
    train(WideDecoderLinSkip(args.latent_dim), probe_config(args.steps), args.run_dir)
    ref_dir = args.reference or Path(f"runs/i13/lin_L{args.latent_dim}_b0.001")
    rows = comparison_rows(args.run_dir, ref_dir, "images_seen",
                           "| images seen | wide decoder val PSNR | TinyVAELinSkip val PSNR | difference |")
    (args.run_dir / "probe.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
