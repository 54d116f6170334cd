"""What a training run reads: the training stream (fixed images or fresh online crops), its batches per step
(a pure function of seed and step, so a resumed run sees the batches the killed one would have), and the fixed
samples drawn from it (the held-out curve's train probe, TinyVAELinSkip's PCA initialisation).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .datasets import ImageDataset, load_images, to_model_input
from .train_config import TrainConfig


PROBE_STEP = 2 ** 40  # the online stream's fixed-seed "step" for the train-side probe of the curve
LINEAR_INIT_IMAGES = 4096  # training images for TinyVAELinSkip's PCA initialisation


def training_stream(cfg: TrainConfig, size: int):
    """What the model trains on: with data="bundled" and cfg.augment, fresh crops from the training-split
    source images every batch (augment.OnlineCrops); otherwise the fixed training split of cfg.data."""
    if cfg.data == "bundled" and cfg.augment and not cfg.limit:
        from .augment import OnlineCrops, TrainSources
        return OnlineCrops(TrainSources.load(cfg.data_path), size, seed=cfg.seed)
    return load_images(cfg.data, size, "train", path=cfg.data_path, topic=cfg.topic, limit=cfg.limit)


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


def init_images(train_images, input_range, device) -> torch.Tensor:
    """Up to LINEAR_INIT_IMAGES training inputs (a fixed-seed draw from the online stream, or the first of a
    fixed set) as a float NCHW tensor in the model's range."""
    from .augment import OnlineCrops
    if isinstance(train_images, OnlineCrops):
        images = train_images.make_batch(step=PROBE_STEP + 1, batch_size=LINEAR_INIT_IMAGES)
    else:
        images = np.asarray(train_images[:LINEAR_INIT_IMAGES])
    return to_model_input(torch.from_numpy(np.ascontiguousarray(images)).to(device), input_range)


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


def data_provenance(train_images) -> dict:
    """What fed training: for the online stream, how many distinct source photos and video frames (and which)."""
    from .augment import OnlineCrops
    if isinstance(train_images, OnlineCrops):
        return {"train_data": {"kind": "online random-resized crops", **train_images.sources.describe(),
                               "augment": dataclasses.asdict(train_images.cfg)}}
    return {"train_data": {"kind": "fixed images", "count": int(len(train_images))}}
