"""`sage-ros distill`: StandardVAE teacher (trained first if absent) -> TinyVAE32 student, plus a baseline.

    sage-ros distill --run-dir runs/distill --steps 2000 --teacher-steps 3000 --device cuda
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .train_cmd import add_budget_arguments, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .distill import DistillConfig

    d = DistillConfig()
    parser.add_argument("--run-dir", type=Path, default=Path("runs/distill"))
    g = parser.add_argument_group("distillation")
    for name in ("w_rec", "w_kl", "w_lat", "w_out", "w_perc"):
        g.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(d, name),
                       help=f"loss weight (default: %(default)s)")
    g.add_argument("--perceptual", choices=("teacher", "vgg16"), default=d.perceptual,
                   help="feature network of the perceptual term (default: frozen teacher encoder)")
    g.add_argument("--vgg16-weights", default=None, help="local torchvision VGG16 weights (.pth/.safetensors)")
    g.add_argument("--teacher", default=None, help="trained StandardVAE run dir (default: <run-dir>/teacher)")
    g.add_argument("--teacher-steps", type=int, default=None, help="teacher budget (default: --steps/--epochs)")
    g.add_argument("--student-latent", type=int, default=d.student_latent)
    g.add_argument("--no-baseline", action="store_true", help="skip the student trained without distillation")
    add_budget_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from .distill import DistillConfig, distill
    from .distributed import cancel_on_sigterm, cleanup_distributed

    cancel_on_sigterm()

    dcfg = DistillConfig(w_rec=args.w_rec, w_kl=args.w_kl, w_lat=args.w_lat, w_out=args.w_out,
                         w_perc=args.w_perc, perceptual=args.perceptual, vgg16_weights=args.vgg16_weights,
                         teacher=args.teacher, teacher_steps=args.teacher_steps,
                         student_latent=args.student_latent, baseline=not args.no_baseline)
    try:
        distill(config_from_args(args), dcfg, args.run_dir)
    finally:
        cleanup_distributed()
    print(f"report: {args.run_dir / 'report.md'}  student: {args.run_dir / 'student' / 'model.safetensors'}")
    return 0
