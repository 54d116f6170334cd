"""`sage-ros train`: train one of the four models into a run directory (resumes if interrupted).

    sage-ros train --model TinyVAE --latent-dim 16 --steps 2000 --batch-size 128 --device cuda --run-dir runs/t16
    torchrun --nproc_per_node 2 -m sage_ros.cli train --model TinyVAE --steps 200 --run-dir runs/ddp
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from sage_ros.models import ARCHITECTURES

from .datasets import SOURCES


def add_budget_arguments(parser: argparse.ArgumentParser, defaults=None) -> None:
    """Data, budget, optimizer, loss and run options shared by train / distill / ablate."""
    from .train import TrainConfig

    d = defaults or TrainConfig()
    g = parser.add_argument_group("data")
    g.add_argument("--data", choices=SOURCES, default=d.data, help="image source (default: %(default)s)")
    g.add_argument("--data-path", default=d.data_path, help="data root / folder / bag for the chosen source")
    g.add_argument("--topic", default=d.topic, help="image topic for --data rosbag")
    g.add_argument("--limit", type=int, default=d.limit, help="use at most this many training images")
    g.add_argument("--no-augment", dest="augment", action="store_false", default=d.augment,
                   help="bundled data: train on the fixed crops instead of fresh random-resized crops per batch")
    g = parser.add_argument_group("budget")
    g.add_argument("--steps", type=int, default=d.steps, help="optimizer steps (> 0 overrides --epochs)")
    g.add_argument("--epochs", type=int, default=d.epochs, help="epochs when --steps is 0 (default: %(default)s)")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="per process (default: %(default)s)")
    g.add_argument("--lr", type=float, default=d.lr, help="peak AdamW learning rate (default: %(default)s)")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay)
    g.add_argument("--warmup-steps", type=int, default=d.warmup_steps, help="linear LR warm-up (<= 1/5 of run)")
    g.add_argument("--min-lr-ratio", type=float, default=d.min_lr_ratio, help="cosine floor as a fraction of lr")
    g.add_argument("--grad-clip", type=float, default=d.grad_clip, help="max gradient norm (0: off)")
    g = parser.add_argument_group("loss")
    g.add_argument("--beta", type=float, default=d.beta, help="KL weight (default: %(default)s)")
    g.add_argument("--kl-warmup", type=float, default=d.kl_warmup, help="fraction of steps for the KL ramp")
    g.add_argument("--recon", choices=("sum", "mean", "sigma"), default=d.recon,
                   help="reconstruction term: sum | mean of squared error, or sigma (sigma-VAE: Gaussian NLL with "
                        "the decoder variance set to the batch MSE; use with --beta 1) (default: %(default)s)")
    g.add_argument("--vq-beta", type=float, default=d.vq_beta, help="VQ commitment weight")
    g.add_argument("--vq-ema", type=float, default=d.vq_ema,
                   help="VQ codebook EMA decay (0: codebook by gradient; default: %(default)s)")
    g.add_argument("--vq-restart", type=float, default=d.vq_restart,
                   help="restart VQ codes used below this fraction of their fair share (0: off; default: %(default)s)")
    g.add_argument("--vq-init", choices=("kmeans", "sample"), default=d.vq_init,
                   help="VQ codebook initialisation from the first batch's encoder outputs")
    g.add_argument("--vq-soft", type=float, default=d.vq_soft,
                   help="straight-through softmax code gradients at this relative temperature (0: plain STE)")
    g = parser.add_argument_group("run")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--device", default=d.device, help="cpu | cuda | cuda:N (default: %(default)s)")
    g.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps between checkpoints")
    g.add_argument("--no-progress", action="store_true", help="no tqdm bar (progress.json is still written)")
    g.add_argument("--eval-every", type=int, default=d.eval_every,
                   help="steps between held-out (val) curve points; 0: none (default: %(default)s)")
    g.add_argument("--eval-images", type=int, default=d.eval_images, help="val images per curve point")
    g.add_argument("--ema", type=float, default=d.ema, help="EMA decay of the weights, e.g. 0.999 (0: off)")
    g.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads (0: torch's default)")


def config_from_args(args: argparse.Namespace):
    from .train import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in fields}
    return TrainConfig(**values, progress_bar=not args.no_progress)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=sorted(ARCHITECTURES), default="TinyVAE")
    parser.add_argument("--latent-dim", type=int, default=None, help="latent size (default: the model's)")
    parser.add_argument("--run-dir", type=Path, default=None, help="default: runs/<model>-L<latent>")
    add_budget_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import torch

    from sage_ros.models import build_model

    from .distributed import cancel_on_sigterm, cleanup_distributed
    from .train import train

    cancel_on_sigterm()

    torch.manual_seed(args.seed)  # the initial weights are part of what --seed fixes
    model = build_model(args.model, args.latent_dim)
    run_dir = args.run_dir or Path("runs") / f"{args.model}-L{model.latent_dim}"
    try:
        train(model, config_from_args(args), run_dir)
    finally:
        cleanup_distributed()
    print(f"model: {run_dir / 'model.safetensors'}  report: {run_dir / 'report.md'}")
    return 0
