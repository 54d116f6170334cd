"""Training of the four sage_ros models, nanoGPT style: one plain loop, no framework.

    from sage_ros.compression.train import TrainConfig, train
    model = train(TinyVAE(16), TrainConfig(steps=2000, device="cuda"), "runs/tinyvae16")

What the loop does, and why:
- AdamW (weight decay on matrices/kernels only, as nanoGPT) + linear warm-up then cosine decay to
  `min_lr_ratio * lr`; gradient-norm clipping.
- Losses per family. Gaussian VAEs: reconstruction + beta_t * KL, where KL is summed over latent dims and
  averaged over the batch, and beta_t ramps linearly from 0 to `beta` over the first `kl_warmup` fraction of
  the steps (KL warm-up keeps the posterior from collapsing before the decoder learns anything).
  `recon="sum"` (default) sums squared error over pixels and averages over the batch: with beta=1 this is
  the negative ELBO of a unit-variance Gaussian decoder. `recon="mean"` averages over pixels too; it divides
  the reconstruction term by C*H*W, so the same beta weighs the KL C*H*W times more.
  VisionPuzzleVAE: mean MSE in its [-1, 1] range + vq_loss (codebook + vq_beta * commitment); its codebook
  starts from encoder outputs of the first batch (k-means-style init) so that the 10 codes are not dead.
- Resumable: every `checkpoint_every` steps <run_dir>/checkpoint.pt (model, optimizer, scheduler, step, RNG
  states as tensors) is written atomically; a new run in the same directory resumes from it. Batch order is a
  pure function of (seed, epoch), so a resumed run sees exactly the batches the killed one would have.
- DDP: under `torchrun --nproc_per_node N` (WORLD_SIZE set) it joins a process group (gloo on CPU, nccl on
  CUDA), shards each epoch with DistributedSampler, and only rank 0 writes files. `batch_size` is per process.
- Output: <run_dir>/model.safetensors + model.json, report.json + report.md (held-out test metrics),
  progress.json while running.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from sage_ros.atomic import atomic_write_json, atomic_write_text
from sage_ros.models.common import kl_divergence
from sage_ros.models.puzzle_vae import vq_loss

from . import metrics
from .checkpoints import CHECKPOINT_FILE, CheckpointError, architecture_of, load_checkpoint, save_checkpoint, save_model
from .datasets import ImageDataset, load_images, to_model_input, to_unit_range
from .progress import ProgressWriter


RECON_MODES = ("sum", "mean", "sigma")
ACTIVE_KL_NATS = 0.01  # a latent dim is "active" when its mean KL over held-out images exceeds this (Burda et al.)
PROBE_STEP = 2 ** 40   # the online stream's fixed-seed "step" for the train-side probe of the curve
SIGMA_FLOOR = 1e-3  # sigma-VAE: smallest decoder std (in [0, 1] pixel units) the analytic estimate may take


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
    recon: str = "sum"              # "sum" | "mean" | "sigma" (see module docstring)
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
    seed: int = 0
    device: str = "cpu"
    checkpoint_every: int = 200
    eval_batch_size: int = 256
    progress_bar: bool = True

    def __post_init__(self):
        if self.recon not in RECON_MODES:
            raise ValueError(f"recon must be one of {RECON_MODES}, got {self.recon!r}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")
        if self.eval_every < 0 or self.eval_images < 1 or self.threads < 0:
            raise ValueError("eval_every >= 0, eval_images >= 1 and threads >= 0 are required")
        if self.batch_size < 1 or self.steps < 0 or self.epochs < 1 or self.lr <= 0:
            raise ValueError("batch_size >= 1, steps >= 0, epochs >= 1 and lr > 0 are required")


# ----------------------------------------------------------------------------------------------- losses

def gaussian_vae_loss(outputs, x: torch.Tensor, beta_t: float, recon: str = "sum"):
    recon_x, mu, logvar = outputs
    if recon == "sum":
        rec = F.mse_loss(recon_x, x, reduction="sum") / x.shape[0]
    elif recon == "sigma":
        rec = sigma_vae_nll(recon_x, x)
    else:
        rec = F.mse_loss(recon_x, x)
    kl = kl_divergence(mu, logvar)
    return rec + beta_t * kl, {"rec": rec.detach(), "kl": kl.detach()}


def sigma_vae_nll(recon_x: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Gaussian NLL per image (nats, constant dropped) with the decoder variance set analytically to the batch MSE.

    sigma-VAE (Rybkin et al., 2021, "optimal sigma"): sigma^2 = mean squared error of the batch; then
    sum_pixels [(x - y)^2 / (2 sigma^2) + log sigma] = D/2 + D/2 log(MSE). With beta = 1 this is a calibrated
    negative ELBO, so the KL term (and log sigma^2 of the latent) keeps its meaning instead of being tuned away.
    """
    pixels = x[0].numel()
    mse = F.mse_loss(recon_x, x).clamp_min(SIGMA_FLOOR ** 2)
    return 0.5 * pixels * (1.0 + torch.log(mse))


def puzzle_loss(outputs, x: torch.Tensor, vq_beta: float, codebook=None, model: nn.Module | None = None):
    """Mean MSE in the model's [-1, 1] range (4x the [0, 1] MSE) + VQ terms. With a vq.CodebookTrainer in EMA
    mode the codebook is an online k-means (no codebook loss, only vq_beta * commitment); otherwise van den
    Oord's codebook + vq_beta * commitment loss. `codebook` also restarts dead codes (either mode)."""
    recon_x, z_e, z_q, codes = outputs
    rec = F.mse_loss(recon_x, x)
    if codebook is not None and codebook.ema:
        vq = vq_beta * F.mse_loss(z_e, z_q.detach())
    else:
        vq = vq_loss(z_e, z_q, vq_beta)
    logs = {"rec": rec.detach(), "vq": vq.detach()}
    if codebook is not None and model is not None and model.training:
        logs.update(codebook.update(model, z_e, codes))
    return rec + vq, logs


def puzzle_training(model: nn.Module, cfg: TrainConfig) -> tuple[Callable, Callable]:
    """(loss_fn, on_fresh_start) for VisionPuzzleVAE, sharing one vq.CodebookTrainer (cfg.vq_*)."""
    from .vq import CodebookTrainer

    if cfg.vq_init not in ("kmeans", "sample"):
        raise ValueError(f"vq_init must be 'kmeans' or 'sample', got {cfg.vq_init!r}")
    codebook = CodebookTrainer(model, decay=cfg.vq_ema, restart_below=cfg.vq_restart, seed=cfg.seed)

    def loss_fn(module, x, step, total):
        model_ = getattr(module, "module", module)
        if cfg.vq_soft > 0:  # single process: calls the model's parts directly (vq.straight_through_softmax)
            from .vq import straight_through_softmax
            return puzzle_loss(straight_through_softmax(model_, x, cfg.vq_soft), x, cfg.vq_beta, codebook, model_)
        return puzzle_loss(module(x), x, cfg.vq_beta, codebook, model_)

    def on_start(module, x):
        if cfg.vq_init == "kmeans":
            codebook.init_kmeans(module, x, seed=cfg.seed)
        else:
            init_codebook_from_data(module, x, cfg.seed)
            codebook.sync(module)
    return loss_fn, on_start


def kl_weight(cfg: TrainConfig, step: int, total: int) -> float:
    ramp = cfg.kl_warmup * total
    return cfg.beta if ramp <= 0 else cfg.beta * min(1.0, (step + 1) / ramp)


def default_loss_fn(model: nn.Module, cfg: TrainConfig) -> Callable:
    """loss_fn(module, x, step, total) -> (loss, logs) for the model's family."""
    if architecture_of(model) == "VisionPuzzleVAE":
        return puzzle_training(model, cfg)[0]
    return lambda module, x, step, total: gaussian_vae_loss(module(x), x, kl_weight(cfg, step, total), cfg.recon)


@torch.no_grad()
def init_codebook_from_data(model: nn.Module, x: torch.Tensor, seed: int) -> None:
    """VQ codebook <- distinct encoder outputs of one batch (k-means++-style seeding without the iterations)."""
    was_training = model.training
    model.eval()
    z = model.encode_continuous(x).permute(0, 2, 3, 1).reshape(-1, model.latent_dim)
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(z), generator=gen)[: model.num_codes].to(z.device)
    model.codebook.weight.copy_(z[pick])
    model.train(was_training)


# ----------------------------------------------------------------------------------------- distributed

class Cancelled(Exception):
    """Raised inside the loop when the job is asked to stop (SIGTERM from jobs.Job.cancel / the node)."""


def cancel_on_sigterm() -> None:
    """Turn SIGTERM into Cancelled, so progress.json says "cancelled" instead of freezing at "training".

    The last checkpoint stays; starting the same job again resumes from it.
    """
    import signal

    def handler(signum, frame):
        raise Cancelled("cancelled by SIGTERM; the last checkpoint is kept and a rerun resumes from it")
    signal.signal(signal.SIGTERM, handler)


def distributed_context(device: str) -> tuple[int, int, torch.device]:
    """(rank, world_size, device); joins the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, torch.device(device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        dev, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return rank, world, dev


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


# --------------------------------------------------------------------------------------- the loop

def lr_lambda(cfg: TrainConfig, total: int) -> Callable[[int], float]:
    warmup = min(cfg.warmup_steps, total // 5)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor


def make_optimizer(module: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    params = [p for p in module.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]  # biases and norm scales: decaying them only hurts
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)


class FixedBatches:
    """Batches from a fixed uint8 array: a seeded permutation per epoch (DistributedSampler), so the batch
    order is a pure function of (seed, epoch) and a resumed run sees what the killed run would have."""

    def __init__(self, images_uint8, input_range, device, seed: int, rank: int, world: int, batch_size: int):
        self.dataset = ImageDataset(images_uint8, input_range, device=device)
        self.sampler = torch.utils.data.DistributedSampler(self.dataset, num_replicas=world, rank=rank,
                                                           shuffle=True, seed=seed, drop_last=True)
        self.batch = min(batch_size, len(self.sampler))
        self.steps_per_epoch = max(1, len(self.sampler) // self.batch)
        self.device, self._epoch, self._order = device, None, None

    def describe(self):
        return len(self.dataset)

    def get(self, step: int) -> torch.Tensor:
        epoch, b = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self.sampler.set_epoch(epoch)
            self._order = torch.tensor(list(self.sampler), dtype=torch.long, device=self.device)
            self._epoch = epoch
        return self.dataset.batch(self._order[b * self.batch:(b + 1) * self.batch])

    def close(self) -> None:
        pass


class OnlineBatches:
    """Batches drawn fresh per step from the source images (augment.OnlineCrops): a pure function of
    (seed, step, rank); cut by a background thread while the model trains."""

    def __init__(self, crops, input_range, device, rank: int, batch_size: int):
        self.crops, self.input_range, self.device, self.rank = crops, input_range, device, rank
        self.batch, self.steps_per_epoch = batch_size, max(1, len(crops) // batch_size)
        self._started = False

    def describe(self):
        return f"online:{self.crops.seed}:{self.crops.size}"

    def get(self, step: int) -> torch.Tensor:
        if not self._started:
            self.crops.start_prefetch(step, self.batch, self.rank)
            self._started = True
        images = torch.from_numpy(self.crops.batch(step, self.batch, self.rank)).to(self.device)
        return to_model_input(images, self.input_range)

    def close(self) -> None:
        self.crops.stop_prefetch()


def make_batches(images, input_range, device, cfg: TrainConfig, rank: int, world: int):
    from .augment import OnlineCrops
    if isinstance(images, OnlineCrops):
        return OnlineBatches(images, input_range, device, rank, cfg.batch_size)
    return FixedBatches(images, input_range, device, cfg.seed, rank, world, cfg.batch_size)


def ema_pays(points: list[dict]) -> bool:
    """Keep the EMA weights only if they beat the raw weights on the held-out (val) curve's last point; without
    a curve there is no evidence either way and the EMA (the usual choice) is kept."""
    if not points or "val_psnr_raw" not in points[-1]:
        return True
    return points[-1]["val_psnr"] >= points[-1]["val_psnr_raw"]


def ema_decay_at(decay: float, updates: int) -> float:
    """EMA decay after `updates` averaging steps: min(decay, (1 + n) / (10 + n)) (TensorFlow's
    ExponentialMovingAverage num_updates rule). Why: with a fixed 0.999 the initial random weights still hold
    0.999^1000 = 37 % of the average after 1,000 steps, so an EMA run's held-out curve read ~10 dB below its raw
    weights for the first few thousand steps (measured on the StandardVAE teacher and the TinyVAE32 students)."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


def _warmup_ema_multi_avg_fn(decay: float):
    """torch's own EMA update (get_ema_multi_avg_fn, which takes a fixed decay) at the decay of ema_decay_at."""
    from torch.optim.swa_utils import get_ema_multi_avg_fn

    def ema_update(ema_params, current_params, num_averaged) -> None:
        get_ema_multi_avg_fn(ema_decay_at(decay, int(num_averaged)))(ema_params, current_params, num_averaged)
    return ema_update


def make_ema(module: nn.Module, decay: float):
    """torch's own AveragedModel with an EMA average whose decay warms up (ema_decay_at); buffers such as
    BatchNorm statistics are averaged too."""
    if decay <= 0:
        return None
    from torch.optim.swa_utils import AveragedModel
    return AveragedModel(module, multi_avg_fn=_warmup_ema_multi_avg_fn(decay), use_buffers=True)


def fit(module: nn.Module, loss_fn: Callable, images_uint8, cfg: TrainConfig, run_dir: str | Path, *,
        input_range=(0.0, 1.0), job: str = "train", on_fresh_start: Callable | None = None,
        forward_inputs: Callable | None = None, curve: Callable | None = None) -> dict:
    """Train `module` in place with `loss_fn(module_or_ddp, x, step, total) -> (loss, logs)`.

    `images_uint8` is a uint8 NHWC array (fixed set, shuffled per epoch) or an augment.OnlineCrops stream.
    Resumes from <run_dir>/checkpoint.pt when it exists. `on_fresh_start(module, first_batch)` runs once
    before the first step of a new run (not on resume). `curve(model, train_side=True) -> dict` (held-out metrics; the
    raw weights of an EMA run are measured with train_side=False, val only) is called
    every `cfg.eval_every` steps and at the end; its points, with the mean training loss since the previous
    point and the images seen, are kept in the checkpoint and written to <run_dir>/curve.json.
    With cfg.ema > 0 the weights left in `module` at the end are the EMA weights if they beat the raw ones on
    the last held-out curve point (ema_pays; stats["weights"] says which). Returns training statistics.
    """
    run_dir = Path(run_dir)
    rank, world, device = distributed_context(cfg.device)
    is_main = rank == 0
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed + rank)
    batches = make_batches(images_uint8, input_range, device, cfg, rank, world)
    batch, steps_per_epoch = batches.batch, batches.steps_per_epoch
    total = cfg.steps if cfg.steps > 0 else cfg.epochs * steps_per_epoch
    signature = {"job": job, "total": total, "batch": batch, "world": world, "seed": cfg.seed,
                 "images": batches.describe()}

    if device.type == "cuda":  # speed over bit-exactness on GPUs; CPU runs stay bit-reproducible
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
    module.to(device).train()
    optimizer = make_optimizer(module, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, total))
    ema = make_ema(module, cfg.ema)
    step, elapsed_before, points = _resume(run_dir / CHECKPOINT_FILE, module, optimizer, scheduler, signature,
                                           device, cfg.seed, rank, ema)
    if step == 0 and on_fresh_start is not None:
        on_fresh_start(module, batches.get(0))
        if ema is not None:
            ema.module.load_state_dict(module.state_dict())
    model_call = module
    if world > 1:
        model_call = nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda"
                                                         else None)

    progress = ProgressWriter(run_dir, job, enabled=is_main)
    progress.set_batch_size(batch * world)
    bar = _progress_bar(cfg, total, step, is_main, job)
    start, window_start, window_images, last_loss = time.perf_counter(), time.perf_counter(), 0, None
    loss_sum, loss_count = torch.zeros((), device=device), 0
    curve_sum, curve_count = 0.0, 0
    eval_every = cfg.eval_every if curve is not None else 0
    try:
        while step < total:
            x = batches.get(step)
            loss, _logs = loss_fn(model_call, x, step, total)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(module.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(module)
            step += 1
            window_images += len(x) * world
            loss_sum += loss.detach()
            loss_count += 1
            if loss_count >= 10 or step == total:  # .item() syncs the GPU: not every step
                now = time.perf_counter()
                last_loss, rate = (loss_sum / loss_count).item(), window_images / max(now - window_start, 1e-9)
                if not math.isfinite(last_loss):  # checked here, not per step: a per-step check syncs the GPU
                    raise FloatingPointError(f"loss is {last_loss} near step {step}; lower lr or check the data")
                curve_sum, curve_count = curve_sum + last_loss * loss_count, curve_count + loss_count
                loss_sum.zero_()
                loss_count, window_images, window_start = 0, 0, now
                progress.update("training", step, total, last_loss, rate)
                if bar is not None:
                    bar.set_postfix(loss=f"{last_loss:.4g}", img_s=f"{rate:.0f}", refresh=False)
            if bar is not None:
                bar.update(1)
            if is_main and eval_every and (step % eval_every == 0 or step == total):
                point = {"step": step, "images_seen": step * batch * world,
                         "train_loss": curve_sum / max(curve_count, 1),
                         "wall_s": round(elapsed_before + time.perf_counter() - start, 1)}
                point.update(curve(ema.module if ema is not None else module))
                if ema is not None:  # the raw weights too: whether the EMA pays is read off the same run
                    point["val_psnr_raw"] = curve(module, train_side=False)["val_psnr"]
                module.train()
                points.append(point)
                curve_sum, curve_count = 0.0, 0
                atomic_write_json(run_dir / "curve.json", {"job": job, "points": points})
            if step % cfg.checkpoint_every == 0 or step == total:
                if is_main:
                    _save_checkpoint(run_dir / CHECKPOINT_FILE, module, optimizer, scheduler, step, signature,
                                     elapsed_before + time.perf_counter() - start, ema, points)
    except Cancelled as exc:
        progress.fail(str(exc), phase="cancelled")
        raise
    except BaseException as exc:
        progress.fail(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        batches.close()
        if bar is not None:
            bar.close()
    _barrier(world)
    weights = "raw"
    if ema is not None and ema_pays(points):
        module.load_state_dict(ema.module.state_dict())
        weights = "ema"
    module.eval()
    wall = elapsed_before + time.perf_counter() - start
    return {"steps": total, "batch_size": batch, "world_size": world, "train_images": batches.describe(),
            "images_seen": total * batch * world,
            "train_time_s": round(wall, 3), "images_per_s": round(total * batch * world / max(wall, 1e-9), 1),
            "final_loss": last_loss, "is_main": is_main, "progress": progress, "curve": points,
            "weights": weights}


def _progress_bar(cfg, total, step, is_main, job):
    if not (cfg.progress_bar and is_main):
        return None
    from tqdm import tqdm
    return tqdm(total=total, initial=step, desc=job, unit="step", dynamic_ncols=True, mininterval=0.5)


def _save_checkpoint(path, module, optimizer, scheduler, step, signature, elapsed_s, ema=None, points=()):
    state = {"model": module.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "step": step, "signature": signature, "elapsed_s": float(elapsed_s),
             "rng_cpu": torch.get_rng_state(), "curve": list(points)}
    if ema is not None:
        state["ema"] = ema.state_dict()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["rng_cuda"] = torch.cuda.get_rng_state()
    save_checkpoint(path, state)


def _resume(path, module, optimizer, scheduler, signature, device, seed, rank, ema=None) -> tuple[int, float, list]:
    ckpt = load_checkpoint(path, device="cpu")
    if ckpt is None:
        return 0, 0.0, []
    if ckpt.get("signature") != signature:
        raise CheckpointError(f"{path} belongs to a different run ({ckpt.get('signature')} vs {signature}); "
                              "use a fresh run directory or delete the checkpoint")
    module.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    if ema is not None:
        if "ema" not in ckpt:
            raise CheckpointError(f"{path} was written without --ema; resume with the same options")
        ema.load_state_dict(ckpt["ema"])
    step = int(ckpt["step"])
    if rank == 0:  # rank 0 continues its exact random stream; other ranks reseed deterministically
        torch.set_rng_state(ckpt["rng_cpu"])
        if "rng_cuda" in ckpt and device.type == "cuda":
            torch.cuda.set_rng_state(ckpt["rng_cuda"])
    else:
        torch.manual_seed(seed + rank + 7919 * step)
    return step, float(ckpt.get("elapsed_s", 0.0)), list(ckpt.get("curve", []))


# ------------------------------------------------------------------------------------------ evaluation

@torch.no_grad()
def evaluate_reconstruction(model: nn.Module, images_uint8, batch_size: int = 256,
                            device: str | torch.device = "cpu") -> dict:
    """Held-out reconstruction on the deterministic path (eval mode, z = mu / nearest codes), in [0, 1].

    Same definitions as evaluate.evaluate_pair (metrics.py): mse and psnr are means of per-image values,
    ssim uses a Gaussian window 11, sigma 1.5 (Wang et al.). VQ models also get code usage (distinct codes
    over the split, and the perplexity of the code histogram: 10 = all codes equally used).
    """
    model.eval().to(device)
    images = torch.as_tensor(np.asarray(images_uint8))
    mse, psnr, ssim, code_counts, kl_dims = [], [], [], None, []
    gaussian = architecture_of(model) != "VisionPuzzleVAE"
    for i in range(0, len(images), batch_size):
        x = to_model_input(images[i:i + batch_size].to(device), model.input_range)
        out = model(x)
        if gaussian:  # per-dim KL(q(z|x) || N(0, 1)): which latent dims carry information
            mu, logvar = out[1], out[2]
            kl_dims.append((-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(0).cpu())
        y, x01 = to_unit_range(out[0], model.input_range), to_unit_range(x, model.input_range)
        mse.append(metrics.mse_per_image(x01, y).cpu())
        psnr.append(metrics.psnr_per_image(x01, y).cpu())
        ssim.append(metrics.ssim_per_image(x01, y).cpu())
        if architecture_of(model) == "VisionPuzzleVAE":
            counts = torch.bincount(out[3].flatten().cpu(), minlength=model.num_codes)
            code_counts = counts if code_counts is None else code_counts + counts
    result = {"images": len(images), **{k: float(torch.cat(v).mean()) for k, v in
                                        (("mse", mse), ("psnr", psnr), ("ssim", ssim))}}
    if gaussian:
        kl_per_dim = torch.stack(kl_dims).sum(0) / len(images)
        result["kl"] = float(kl_per_dim.sum())
        result["active_dims"] = int((kl_per_dim > ACTIVE_KL_NATS).sum())
    if code_counts is not None:
        p = code_counts.double() / code_counts.sum()
        result["codes_used"] = int((code_counts > 0).sum())
        result["code_perplexity"] = float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))
    return result


# --------------------------------------------------------------------------------------------- public

def training_stream(cfg: TrainConfig, size: int):
    """What the model trains on: with data="bundled" and cfg.augment, fresh crops from the training-split
    source images every batch (augment.OnlineCrops); otherwise the fixed training split of cfg.data."""
    if cfg.data == "bundled" and cfg.augment and not cfg.limit:
        from .augment import OnlineCrops, TrainSources
        return OnlineCrops(TrainSources.load(cfg.data_path), size, seed=cfg.seed)
    return load_images(cfg.data, size, "train", path=cfg.data_path, topic=cfg.topic, limit=cfg.limit)


def held_out_curve(images_uint8, cfg: TrainConfig, train_probe=None) -> Callable[[nn.Module], dict]:
    """curve(model) -> {"val_psnr", "val_ssim", "val_mse", ...} on a fixed held-out sample (and "train_psnr"
    on a fixed sample of training inputs when `train_probe` is given and `train_side`: the gap shows
    memorisation)."""
    device = _eval_device(cfg)

    def curve(model: nn.Module, train_side: bool = True) -> dict:
        held = evaluate_reconstruction(model, images_uint8, cfg.eval_batch_size, device)
        point = {f"val_{k}": v for k, v in held.items() if k != "images"}
        if train_probe is not None and train_side:
            point["train_psnr"] = evaluate_reconstruction(model, train_probe, cfg.eval_batch_size, device)["psnr"]
        return point
    return curve


def train(model: nn.Module, cfg: TrainConfig, run_dir: str | Path, *, train_images=None, test_images=None,
          job: str = "train") -> nn.Module:
    """Train `model` into `run_dir` (resuming if a checkpoint is there); returns the model in eval mode.

    Images default to `cfg.data`'s training stream (training_stream) and its test split at the model's
    resolution; with cfg.eval_every > 0 a held-out curve on the val split is written to curve.json/curve.png.
    """
    run_dir = Path(run_dir)
    size = model.image_size
    if train_images is None:
        train_images = training_stream(cfg, size)
    on_start, loss_fn = None, None
    if architecture_of(model) == "VisionPuzzleVAE":
        loss_fn, on_start = puzzle_training(model, cfg)
    elif hasattr(model, "init_linear_path"):  # TinyVAELinSkip: its linear path starts as a PCA of training images
        on_start = lambda module, x: module.init_linear_path(  # noqa: E731
            init_images(train_images, model.input_range, x.device))
    curve = None
    if cfg.eval_every > 0:
        curve = held_out_curve(*curve_images(cfg, size, train_images))
    stats = fit(model, loss_fn or default_loss_fn(model, cfg), train_images, cfg, run_dir, input_range=model.input_range,
                job=job, on_fresh_start=on_start, curve=curve)
    progress = stats.pop("progress")
    if stats.pop("is_main"):
        progress.update("evaluating", stats["steps"], stats["steps"], stats["final_loss"], force=True)
        if test_images is None:
            test_images = load_images(cfg.data, size, "test", path=cfg.data_path, topic=cfg.topic)
        metrics = evaluate_reconstruction(model, test_images, cfg.eval_batch_size, _eval_device(cfg))
        write_run_outputs(model, run_dir, cfg, stats, metrics, job, data_provenance(train_images))
        progress.finish()
    _barrier(stats["world_size"])
    return model.cpu().eval()


LINEAR_INIT_IMAGES = 4096  # training images for TinyVAELinSkip's PCA initialisation


def init_images(train_images, input_range, device) -> torch.Tensor:
    """Up to LINEAR_INIT_IMAGES training inputs (a fixed-seed draw from the online stream, or the first of a
    fixed set) as a float NCHW tensor in the model's range."""
    from .augment import OnlineCrops
    if isinstance(train_images, OnlineCrops):
        images = train_images.make_batch(step=PROBE_STEP + 1, batch_size=LINEAR_INIT_IMAGES)
    else:
        images = np.asarray(train_images[:LINEAR_INIT_IMAGES])
    return to_model_input(torch.from_numpy(np.ascontiguousarray(images)).to(device), input_range)


def data_provenance(train_images) -> dict:
    """What fed training: for the online stream, how many distinct source photos and video frames (and which)."""
    from .augment import OnlineCrops
    if isinstance(train_images, OnlineCrops):
        return {"train_data": {"kind": "online random-resized crops", **train_images.sources.describe(),
                               "augment": dataclasses.asdict(train_images.cfg)}}
    return {"train_data": {"kind": "fixed images", "count": int(len(train_images))}}


def curve_images(cfg: TrainConfig, size: int, train_images) -> tuple:
    """(val sample, cfg, train probe) for held_out_curve: the first cfg.eval_images val images, and as many
    training inputs (the first of the fixed set, or a fixed-seed draw from the online stream)."""
    from .augment import OnlineCrops
    val = load_images(cfg.data, size, "val", path=cfg.data_path, topic=cfg.topic)[: cfg.eval_images]
    if isinstance(train_images, OnlineCrops):
        probe = train_images.make_batch(step=PROBE_STEP, batch_size=min(cfg.eval_images, 512))
    else:
        probe = np.asarray(train_images[: cfg.eval_images])
    return val, cfg, probe


def _eval_device(cfg: TrainConfig) -> torch.device:
    rank, world, device = distributed_context(cfg.device)
    return device


def write_run_outputs(model, run_dir, cfg, stats, metrics, job="train", extra: dict | None = None) -> None:
    """model.safetensors + model.json + report.json + report.md + metrics.json."""
    report = {"job": job, "architecture": architecture_of(model), "latent_dim": int(model.latent_dim),
              "params": sum(p.numel() for p in model.parameters()), "config": dataclasses.asdict(cfg),
              **stats, "test_split": "test", "metrics": metrics, **(extra or {})}
    save_model(model, run_dir, {"train": report})
    # small summary for `sage-ros export --metrics` (bundle.json embeds it next to its own held-out numbers)
    atomic_write_json(Path(run_dir) / "metrics.json", {
        "training": {"job": job, "steps": stats["steps"], "batch_size": stats["batch_size"],
                     "world_size": stats["world_size"], "device": cfg.device, "data": cfg.data,
                     "train_images": stats["train_images"], "images_per_s": stats["images_per_s"]},
        "held_out_torch": metrics})
    atomic_write_json(Path(run_dir) / "report.json", report)
    atomic_write_text(Path(run_dir) / "report.md", report_markdown(report))
    if stats.get("curve"):
        from .report import plot_training_curve
        plot_training_curve(Path(run_dir) / "curve.png", stats["curve"],
                            f"{job}: {architecture_of(model)} L={int(model.latent_dim)}")


def report_markdown(report: dict) -> str:
    m = report["metrics"]
    fmt = lambda v: "n/a" if v is None else (f"{v:.5g}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = [f"# {report['job']}: {report['architecture']} (latent {report['latent_dim']})", "",
             f"- parameters: {report['params']:,}",
             f"- steps: {report['steps']} x batch {report['batch_size']} x {report['world_size']} process(es), "
             f"{report['train_images']} training images, device {report['config']['device']}",
             f"- training time: {report['train_time_s']:.1f} s ({report['images_per_s']:.0f} images/s)",
             f"- final training loss: {fmt(report['final_loss'])}", "",
             f"Held-out `{report['test_split']}` split ({m['images']} images, deterministic path, [0, 1] range):", "",
             "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {fmt(v)} |" for k, v in m.items() if k != "images"]
    if report.get("curve"):
        lines += ["", f"Held-out curve (val split, {len(report['curve'])} points; curve.png, curve.json):", "",
                  "| images seen | train loss | val PSNR | train-input PSNR |", "|---|---|---|---|"]
        lines += [f"| {p['images_seen']:,} | {fmt(p['train_loss'])} | {fmt(p.get('val_psnr'))} | "
                  f"{fmt(p.get('train_psnr'))} |" for p in report["curve"]]
    return "\n".join(lines) + "\n"
