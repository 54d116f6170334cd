"""Shared by test_quant_* / test_evaluate_*: small seeded data and briefly trained models, so quantization
error is that of trained weights (structured, with outliers) rather than of a random init."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from sage_ros.models import build_model


def smooth_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """uint8 N x size x size x 3: gradients + a few soft blobs, i.e. compressible like photographs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.empty((n, size, size, 3), np.float32)
    for i in range(n):
        img = (rng.uniform(0, 1, 3) + rng.uniform(-0.5, 0.5, 3) * xx[..., None]
               + rng.uniform(-0.5, 0.5, 3) * yy[..., None])
        for _ in range(3):
            cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
            blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
            img = img + blob[..., None] * rng.uniform(-0.6, 0.6, 3)
        out[i] = img
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def _train(model, images: np.ndarray, steps: int, seed: int, batch: int = 16):
    torch.manual_seed(seed)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    lo, hi = model.input_range
    x = x * (hi - lo) + lo
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    for step in range(steps):
        xb = x[torch.randint(0, len(x), (batch,))]
        if hasattr(model, "num_codes"):
            from sage_ros.models.puzzle_vae import vq_loss
            out = model(xb)
            loss = torch.nn.functional.mse_loss(out[0], xb) + vq_loss(out[1], out[2])
        else:  # deterministic autoencoder steps (z = mu): a few steps then already learn structure
            mu, logvar = model.encode(xb)
            loss = torch.nn.functional.mse_loss(model.decode(mu), xb) + 1e-3 * logvar.pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@functools.lru_cache(maxsize=None)
def _trained_state(arch: str, latent_dim: int, steps: int, seed: int):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches on 2 shared cores: more threads only oversubscribe them
    try:
        return _train_fresh(arch, latent_dim, steps, seed)
    finally:
        torch.set_num_threads(threads)


def _train_fresh(arch: str, latent_dim: int, steps: int, seed: int):
    torch.manual_seed(seed)
    model = build_model(arch, latent_dim)
    big = model.image_size > 64  # VisionPuzzleVAE: 224 px, keep it cheap
    images = smooth_images(16 if big else 64, model.image_size, seed)
    _train(model, images, steps, seed, batch=4 if big else 16)
    return {k: v.clone() for k, v in model.state_dict().items()}


def trained_model(arch: str = "TinyVAE", latent_dim: int = 16, steps: int = 100, seed: int = 0):
    """A fresh copy of a seeded, briefly trained model (training cached per process)."""
    model = build_model(arch, latent_dim)
    model.load_state_dict(_trained_state(arch, latent_dim, steps, seed))
    return model.eval()


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Imported by the quant/evaluate test modules: these models are tiny, and on the shared 2-core machine
    extra intra-op threads only spin (measured: 35 s with one thread vs 110 s with two for these tests)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def untrained_run(directory, latent_dim: int = 8):
    """A run directory holding a seeded, untrained TinyVAE: enough for CLI paths that never judge quality."""
    from sage_ros.compression.checkpoints import save_model
    from sage_ros.models import TinyVAE

    torch.manual_seed(0)
    save_model(TinyVAE(latent_dim=latent_dim), directory)
    return directory
