"""`sage-ros ablate`: TinyVAE at L in {4, 8, 16, 32, 64} x {fp32, int8, int4}, trained and measured.

    sage-ros ablate --run-dir runs/ablate --steps 3000 --batch-size 128 --device cuda --train-only   # GPU box
    sage-ros ablate --run-dir runs/ablate                     # here: reuses L*/model.safetensors, quantizes
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .train_cmd import add_budget_arguments, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .ablate import LATENTS

    parser.add_argument("--run-dir", type=Path, default=Path("runs/ablate"))
    g = parser.add_argument_group("ablation")
    g.add_argument("--latents", type=int, nargs="+", default=list(LATENTS), help="latent sizes (default: %(default)s)")
    g.add_argument("--int4-group-size", type=int, default=64)
    g.add_argument("--psnr-tolerance-db", type=float, default=1.0, help="recommendation: PSNR slack vs best fp32")
    g.add_argument("--min-mu-cosine", type=float, default=0.99, help="recommendation: latent fidelity floor")
    g.add_argument("--train-only", action="store_true", help="train missing L runs, skip quantization/evaluation")
    g.add_argument("--model", dest="architecture", choices=("TinyVAE", "TinyVAELinSkip"), default="TinyVAE",
                   help="the seed TinyVAE or the TinyVAELinSkip variant (default: %(default)s)")
    g.add_argument("--pca-margin-db", type=float, default=1.0,
                   help="recommendation: fp32 must beat PCA-L by this many dB (default: %(default)s)")
    add_budget_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from .ablate import AblationConfig, ablate
    from .distributed import cancel_on_sigterm, cleanup_distributed

    cancel_on_sigterm()

    acfg = AblationConfig(latents=tuple(args.latents), int4_group_size=args.int4_group_size,
                          psnr_tolerance_db=args.psnr_tolerance_db, min_mu_cosine=args.min_mu_cosine,
                          train_only=args.train_only, architecture=args.architecture,
                          pca_margin_db=args.pca_margin_db)
    try:
        result = ablate(config_from_args(args), args.run_dir, acfg)
    finally:
        cleanup_distributed()
    if result:
        print(result["recommendation"]["why"])
        print(f"table: {args.run_dir / 'ablation.md'}  figure: {args.run_dir / 'ablation.png'}")
    return 0
