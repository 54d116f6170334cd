"""Training of the four sage_ros models, nanoGPT style: one plain loop, no framework.

    from sage_ros.compression.train import TrainConfig, train
    model = train(TinyVAE(16), TrainConfig(steps=2000, device="cuda"), "runs/tinyvae16")

What the loop does, and why:
- AdamW (weight decay on matrices/kernels only, as nanoGPT) + linear warm-up then cosine decay to
  `min_lr_ratio * lr`; gradient-norm clipping.
- Losses per family: one table, losses.LOSSES (Gaussian VAEs: reconstruction + warmed-up beta * KL;
  VisionPuzzleVAE: MSE + VQ terms).
- Resumable: every `checkpoint_every` steps <run_dir>/checkpoint.pt (model, optimizer, scheduler, step, RNG
  states as tensors) is written atomically; a new run in the same directory resumes from it. Batch order is a
  pure function of (seed, epoch), so a resumed run sees exactly the batches the killed one would have.
- DDP: under `torchrun --nproc_per_node N` (WORLD_SIZE set) it joins a process group (gloo on CPU, nccl on
  CUDA), shards each epoch with DistributedSampler, and only rank 0 writes files. `batch_size` is per process.
- Output: <run_dir>/model.safetensors + model.json, report.json + report.md (held-out test metrics),
  progress.json while running.

This file is the loop; its parts each have a home: train_config.py (TrainConfig), losses.py, batches.py (the
training stream), optim.py (AdamW, schedule, EMA), checkpoints.py (resume), distributed.py (DDP, SIGTERM),
held_out.py (evaluation), train_report.py (the run's files).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from sage_ros.atomic import atomic_write_json

from .batches import curve_images, data_provenance, make_batches, training_stream
from .checkpoints import CHECKPOINT_FILE, init_weights_from, resume_training, save_training_checkpoint
from .datasets import load_images
from .distributed import Cancelled, barrier, distributed_context, eval_device
from .held_out import evaluate_reconstruction, held_out_curve
from .losses import objective
from .optim import ema_pays, lr_lambda, make_ema, make_optimizer
from .progress import ProgressWriter
from .train_config import TrainConfig
from .train_report import write_run_outputs


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
    loss_fn, on_start = objective(model, cfg, train_images)
    curve = None
    if cfg.eval_every > 0:
        curve = held_out_curve(*curve_images(cfg, size, train_images))
    stats = fit(model, loss_fn, train_images, cfg, run_dir, input_range=model.input_range,
                job=job, on_fresh_start=on_start, curve=curve)
    progress = stats.pop("progress")
    if stats.pop("is_main"):
        progress.update("evaluating", stats["steps"], stats["steps"], stats["final_loss"], force=True)
        if test_images is None:
            test_images = load_images(cfg.data, size, "test", path=cfg.data_path, topic=cfg.topic)
        metrics = evaluate_reconstruction(model, test_images, cfg.eval_batch_size, eval_device(cfg))
        write_run_outputs(model, run_dir, cfg, stats, metrics, job, data_provenance(train_images))
        progress.finish()
    barrier(stats["world_size"])
    return model.cpu().eval()


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
    step, elapsed_before, points = resume_training(run_dir / CHECKPOINT_FILE, module, optimizer, scheduler,
                                                   signature, device, cfg.seed, rank, ema)
    if step == 0 and cfg.init_from:  # fine-tuning: trained weights replace the data-driven initialisation
        init_weights_from(module, cfg.init_from)
        module.to(device)
    elif step == 0 and on_fresh_start is not None:
        on_fresh_start(module, batches.get(0))
    if step == 0 and ema is not None:
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
                    save_training_checkpoint(run_dir / CHECKPOINT_FILE, module, optimizer, scheduler, step,
                                             signature, elapsed_before + time.perf_counter() - start, ema, points)
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
    barrier(world)
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
