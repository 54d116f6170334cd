"""TrainConfig: every knob of a training run (train.py), with its default and why.
"""
from __future__ import annotations

import dataclasses


RECON_MODES = ("sum", "mean", "sigma", "sigma_image")


@dataclasses.dataclass
class TrainConfig:
    # data
    data: str = "bundled"           # bundled | cifar10 | folder | rosbag | synthetic (see datasets.py)
    data_path: str | None = None    # root / directory / bag for the non-default sources
    topic: str | None = None        # rosbag image topic
    limit: int | None = None        # use at most this many training images
    # budget: steps > 0 wins over epochs
    steps: int = 0
    epochs: int = 20
    batch_size: int = 64            # per process under DDP
    # optimizer and schedule
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100         # capped at a fifth of the run
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    # loss
    beta: float = 0.001             # KL weight (Gaussian VAEs); models/reports/tinyvae/objective_sweep.md
    kl_warmup: float = 0.2          # fraction of the steps over which beta ramps up from 0
    recon: str = "sum"              # "sum" | "mean" | "sigma" | "sigma_image" (see losses.py)
    vq_beta: float = 0.25           # commitment weight (VisionPuzzleVAE)
    vq_ema: float = 0.99            # VQ codebook as EMA k-means with this decay (0: by gradient): behind at 300
                                    # steps, best at the end of a schedule (models/reports/puzzle/README.md)
    vq_restart: float = 0.03        # move a code used < this fraction of its fair share 1/K onto data (0: never)
    vq_init: str = "kmeans"         # VQ codebook start: "kmeans" of the first batch's encoder outputs | "sample"
    vq_soft: float = 0.0            # >0: straight-through softmax code gradients at this relative temperature
    # data stream and held-out curve
    augment: bool = True            # data="bundled": fresh random-resized crops every batch (augment.py)
    eval_every: int = 0             # steps between held-out (val) evaluations for the curve; 0: at the end only
    eval_images: int = 512          # val images per curve point (the final test evaluation uses all)
    ema: float = 0.0                # decay of an exponential moving average of the weights (0: off)
    threads: int = 0                # torch intra-op threads (0: torch's default)
    # run
    init_from: str | None = None    # fine-tune: start a new run from these trained weights (run or fp32 bundle dir)
    seed: int = 0
    device: str = "cpu"
    checkpoint_every: int = 200
    eval_batch_size: int = 256
    progress_bar: bool = True

    def __post_init__(self):
        if self.init_from is not None:
            self.init_from = str(self.init_from)  # a Path from argparse; the config is written as JSON
        if self.recon not in RECON_MODES:
            raise ValueError(f"recon must be one of {RECON_MODES}, got {self.recon!r}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")
        if self.eval_every < 0 or self.eval_images < 1 or self.threads < 0:
            raise ValueError("eval_every >= 0, eval_images >= 1 and threads >= 0 are required")
        if self.batch_size < 1 or self.steps < 0 or self.epochs < 1 or self.lr <= 0:
            raise ValueError("batch_size >= 1, steps >= 0, epochs >= 1 and lr > 0 are required")
