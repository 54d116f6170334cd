"""`sage-ros train`: train one of the models (sage_ros.models.ARCHITECTURES) into a run directory (resumes if
interrupted), then print its held-out PSNR.

    sage-ros train --arch TinyVAE --latent-dim 16 --steps 2000 --batch-size 128 --device cuda --run-dir runs/t16
    torchrun --nproc_per_node 2 -m sage_ros.cli train --arch TinyVAE --steps 200 --run-dir runs/ddp
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from sage_ros.models import ARCHITECTURES
from sage_ros.usage import (UsageError, existing_dir, new_output, non_negative_float, non_negative_int,
                            positive_float, positive_int, renamed)

from .datasets import SOURCES
from .train_config import RECON_MODES


def add_budget_arguments(parser: argparse.ArgumentParser, defaults=None) -> None:
    """Data, budget, optimizer, loss and run options shared by train / distill / ablate."""
    from .train import TrainConfig

    d = defaults or TrainConfig()
    g = parser.add_argument_group("data")
    g.add_argument("--data", choices=SOURCES, default=d.data, help="image source (default: %(default)s)")
    g.add_argument("--data-path", default=d.data_path, help="data root / folder / bag for the chosen source")
    g.add_argument("--topic", default=d.topic, help="image topic for --data rosbag")
    g.add_argument("--limit", type=non_negative_int, default=d.limit,
                   help="use at most this many training images")
    g.add_argument("--no-augment", dest="augment", action="store_false", default=d.augment,
                   help="bundled data: train on the fixed crops instead of fresh random-resized crops per batch")
    g = parser.add_argument_group("budget")
    g.add_argument("--steps", type=non_negative_int, default=d.steps, help="optimizer steps (> 0 overrides --epochs)")
    g.add_argument("--epochs", type=positive_int, default=d.epochs,
                   help="epochs when --steps is 0 (default: %(default)s)")
    g.add_argument("--batch-size", type=positive_int, default=d.batch_size, help="per process (default: %(default)s)")
    g.add_argument("--lr", type=positive_float, default=d.lr, help="peak AdamW learning rate (default: %(default)s)")
    g.add_argument("--weight-decay", type=non_negative_float, default=d.weight_decay)
    g.add_argument("--warmup-steps", type=non_negative_int, default=d.warmup_steps,
                   help="linear LR warm-up (<= 1/5 of run)")
    g.add_argument("--min-lr-ratio", type=non_negative_float, default=d.min_lr_ratio,
                   help="cosine floor as a fraction of lr")
    g.add_argument("--grad-clip", type=non_negative_float, default=d.grad_clip, help="max gradient norm (0: off)")
    g = parser.add_argument_group("loss")
    g.add_argument("--beta", type=non_negative_float, default=d.beta, help="KL weight (default: %(default)s)")
    g.add_argument("--kl-warmup", type=non_negative_float, default=d.kl_warmup,
                   help="fraction of steps for the KL ramp")
    g.add_argument("--recon", choices=RECON_MODES, default=d.recon,
                   help="reconstruction term: sum | mean of squared error, sigma (sigma-VAE: Gaussian NLL with "
                        "the decoder variance set to the batch MSE; use with --beta 1) or sigma_image (one variance "
                        "per image: the mean per-image log MSE, i.e. mean PSNR) (default: %(default)s)")
    g.add_argument("--vq-beta", type=non_negative_float, default=d.vq_beta, help="VQ commitment weight")
    g.add_argument("--vq-ema", type=non_negative_float, default=d.vq_ema,
                   help="VQ codebook EMA decay (0: codebook by gradient; default: %(default)s)")
    g.add_argument("--vq-restart", type=non_negative_float, default=d.vq_restart,
                   help="restart VQ codes used below this fraction of their fair share (0: off; default: %(default)s)")
    g.add_argument("--vq-init", choices=("kmeans", "sample"), default=d.vq_init,
                   help="VQ codebook initialisation from the first batch's encoder outputs")
    g.add_argument("--vq-soft", type=non_negative_float, default=d.vq_soft,
                   help="straight-through softmax code gradients at this relative temperature (0: plain STE)")
    g = parser.add_argument_group("run")
    g.add_argument("--init-from", type=existing_dir, default=d.init_from, metavar="DIR",
                   help="fine-tune: start from the trained weights of a run directory or fp32 bundle of the same "
                        "architecture and latent size (ignored when the run directory resumes)")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--device", default=d.device, help="cpu | cuda | cuda:N (default: %(default)s)")
    g.add_argument("--checkpoint-every", type=positive_int, default=d.checkpoint_every,
                   help="steps between checkpoints")
    g.add_argument("--no-progress", action="store_true", help="no tqdm bar (progress.json is still written)")
    g.add_argument("--eval-every", type=non_negative_int, default=d.eval_every,
                   help="steps between held-out (val) curve points; 0: none (default: %(default)s)")
    g.add_argument("--eval-images", type=positive_int, default=d.eval_images, help="val images per curve point")
    g.add_argument("--ema", type=non_negative_float, default=d.ema,
                   help="EMA decay of the weights, e.g. 0.999 (0: off)")
    g.add_argument("--threads", type=non_negative_int, default=d.threads,
                   help="torch CPU threads (0: torch's default)")


def config_from_args(args: argparse.Namespace):
    from .train import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in fields}
    try:
        return TrainConfig(**values, progress_bar=not args.no_progress)
    except ValueError as exc:  # a value TrainConfig refuses: a usage error, before any work
        first = (str(exc).split() or [""])[0]
        raise UsageError(f"argument --{first.replace('_', '-')}: {exc}" if first in fields else str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    names = list(ARCHITECTURES)
    parser.description = (f"Train one of the {len(names)} models ({', '.join(names[:-1])} or {names[-1]}) into a "
                          "run directory (resumes if interrupted); ends by printing its held-out PSNR.")
    parser.add_argument("--arch", "--model", dest="arch", choices=names, default="TinyVAE",
                        action=renamed("--model"),
                        help="architecture to train (default: %(default)s; --model: deprecated spelling)")
    parser.add_argument("--latent-dim", type=positive_int, default=None, help="latent size (default: the model's)")
    parser.add_argument("--run-dir", type=new_output, default=None, help="default: runs/<arch>-L<latent>")
    add_budget_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import torch

    from sage_ros.models import build_model

    from .distributed import cancel_on_sigterm, cleanup_distributed
    from .train import train

    cancel_on_sigterm()

    torch.manual_seed(args.seed)  # the initial weights are part of what --seed fixes
    try:
        model = build_model(args.arch, args.latent_dim)
    except ValueError as exc:
        raise UsageError(f"argument --latent-dim: {exc}") from None
    run_dir = args.run_dir or Path("runs") / f"{args.arch}-L{model.latent_dim}"
    if args.init_from is not None:  # refuse weights of another model before any work (train() loads them again)
        from .checkpoints import CheckpointError, init_weights_from
        try:
            init_weights_from(model, args.init_from)
        except CheckpointError as exc:
            raise UsageError(f"argument --init-from: {exc}") from None
    try:
        train(model, config_from_args(args), run_dir)
    finally:
        cleanup_distributed()
    held_out = held_out_line(run_dir)
    if held_out:
        print(held_out)
    print(f"model: {run_dir / 'model.safetensors'}  report: {run_dir / 'report.md'}")
    return 0


def held_out_line(run_dir: Path) -> str | None:
    """'held-out test split (1500 images): PSNR 21.40 dB, SSIM 0.494' from the run's metrics.json (None on ranks
    that wrote none)."""
    import json

    try:
        metrics = json.loads((Path(run_dir) / "metrics.json").read_text())["held_out_torch"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (f"held-out test split ({metrics.get('images', '?')} images): PSNR {metrics['psnr']:.2f} dB, "
            f"SSIM {metrics['ssim']:.3f}")
