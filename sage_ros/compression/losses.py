"""Training losses, one entry per model family in LOSSES: LOSSES[architecture](model, cfg, train_images) ->
(loss_fn, on_fresh_start). loss_fn(module_or_ddp, x, step, total) -> (loss, logs); on_fresh_start(module,
first_batch), or None, runs once before the first step of a new run (not on resume).

- Gaussian VAEs: reconstruction + beta_t * KL, where KL is summed over latent dims and averaged over the batch, and
  beta_t ramps linearly from 0 to `beta` over the first `kl_warmup` fraction of the steps (KL warm-up keeps the
  posterior from collapsing before the decoder learns anything). `recon="sum"` (default) sums squared error over
  pixels and averages over the batch: with beta=1 this is the negative ELBO of a unit-variance Gaussian decoder.
  `recon="mean"` averages over pixels too; it divides the reconstruction term by C*H*W, so the same beta weighs
  the KL C*H*W times more. `recon="sigma"`: sigma_vae_nll; `recon="sigma_image"`: the same with one sigma per
  image (mean per-image log MSE, i.e. the mean per-image PSNR the evaluation reports). A *LinSkip model's linear
  path starts as a PCA of training images.
- VisionPuzzleVAE: mean MSE in its [-1, 1] range + vq_loss (codebook + vq_beta * commitment); its codebook starts
  from encoder outputs of the first batch (k-means-style init) so that the 10 codes are not dead.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from sage_ros.models.common import kl_divergence
from sage_ros.models.puzzle_vae import vq_loss

from .batches import init_images
from .checkpoints import architecture_of
from .train_config import TrainConfig

SIGMA_FLOOR = 1e-3  # sigma-VAE: smallest decoder std (in [0, 1] pixel units) the analytic estimate may take
# Per-image sigma: an image reconstructed better than 40 dB (sigma 0.01) gains nothing more, which also caps one flat
# crop's weight at 100x a 20 dB crop's (with the 60 dB floor a few flat crops of wall steered whole batches).
SIGMA_IMAGE_FLOOR = 1e-2


def gaussian_vae_loss(outputs, x: torch.Tensor, beta_t: float, recon: str = "sum"):
    recon_x, mu, logvar = outputs
    if recon == "sum":
        rec = F.mse_loss(recon_x, x, reduction="sum") / x.shape[0]
    elif recon == "sigma":
        rec = sigma_vae_nll(recon_x, x)
    elif recon == "sigma_image":
        rec = sigma_vae_nll(recon_x, x, per_image=True)
    else:
        rec = F.mse_loss(recon_x, x)
    kl = kl_divergence(mu, logvar)
    return rec + beta_t * kl, {"rec": rec.detach(), "kl": kl.detach()}


def sigma_vae_nll(recon_x: torch.Tensor, x: torch.Tensor, per_image: bool = False) -> torch.Tensor:
    """Gaussian NLL per image (nats, constant dropped) with the decoder variance set analytically to the batch MSE.

    sigma-VAE (Rybkin et al., 2021, "optimal sigma"): sigma^2 = mean squared error of the batch; then
    sum_pixels [(x - y)^2 / (2 sigma^2) + log sigma] = D/2 + D/2 log(MSE). With beta = 1 this is a calibrated
    negative ELBO, so the KL term (and log sigma^2 of the latent) keeps its meaning instead of being tuned away.

    per_image=True gives each image its own sigma^2 = that image's MSE, so the term is D/2 (1 + mean_i log MSE_i):
    the mean per-image PSNR the evaluation reports, up to sign and scale. Why it matters: a batch-wide squared
    error is dominated by textured crops, and a model trained on it leaves smooth frames (sky, walls, bokeh) at a
    few dB below PCA, which gets those nearly right; log MSE_i weighs each image's error by 1 / MSE_i.
    """
    pixels = x[0].numel()
    if per_image:
        mse = (recon_x - x).pow(2).flatten(1).mean(1).clamp_min(SIGMA_IMAGE_FLOOR ** 2)
        return 0.5 * pixels * (1.0 + torch.log(mse)).mean()
    mse = F.mse_loss(recon_x, x).clamp_min(SIGMA_FLOOR ** 2)
    return 0.5 * pixels * (1.0 + torch.log(mse))


def kl_weight(cfg: TrainConfig, step: int, total: int) -> float:
    ramp = cfg.kl_warmup * total
    return cfg.beta if ramp <= 0 else cfg.beta * min(1.0, (step + 1) / ramp)


def puzzle_loss(outputs, x: torch.Tensor, vq_beta: float, codebook=None, model: nn.Module | None = None,
                per_image: bool = False):
    """Mean MSE in the model's [-1, 1] range (4x the [0, 1] MSE) + VQ terms. With a vq.CodebookTrainer in EMA
    mode the codebook is an online k-means (no codebook loss, only vq_beta * commitment); otherwise van den
    Oord's codebook + vq_beta * commitment loss. `codebook` also restarts dead codes (either mode).
    per_image (`--recon sigma_image`): each image's squared error weighed by (batch MSE / its own MSE), held
    constant: the gradient of the mean per-image log MSE, rescaled to the plain MSE's size so that the VQ terms
    keep their weight (the per-image sigma floor as in sigma_vae_nll, in this model's range)."""
    recon_x, z_e, z_q, codes = outputs
    if per_image:
        per = (recon_x - x).pow(2).flatten(1).mean(1)
        held = per.detach()
        floor = (2 * SIGMA_IMAGE_FLOOR) ** 2  # [-1, 1] range: twice the [0, 1] sigma
        rec = (held.mean() / held.clamp_min(floor) * per).mean()
    else:
        rec = F.mse_loss(recon_x, x)
    if codebook is not None and codebook.ema:
        vq = vq_beta * F.mse_loss(z_e, z_q.detach())
    else:
        vq = vq_loss(z_e, z_q, vq_beta)
    logs = {"rec": rec.detach(), "vq": vq.detach()}
    if codebook is not None and model is not None and model.training:
        logs.update(codebook.update(model, z_e, codes))
    return rec + vq, logs


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


def gaussian_objective(model: nn.Module, cfg: TrainConfig, train_images=None) -> tuple[Callable, None]:
    """Reconstruction + kl_weight(step) * KL (cfg.recon, cfg.beta, cfg.kl_warmup)."""
    def loss_fn(module, x, step, total):
        return gaussian_vae_loss(module(x), x, kl_weight(cfg, step, total), cfg.recon)
    return loss_fn, None


def linskip_objective(model: nn.Module, cfg: TrainConfig, train_images) -> tuple[Callable, Callable]:
    """The Gaussian loss; a *LinSkip model's linear path starts as a PCA of training images (init_images)."""
    loss_fn, _ = gaussian_objective(model, cfg)

    def on_start(module, x):
        module.init_linear_path(init_images(train_images, model.input_range, x.device))
    return loss_fn, on_start


def puzzle_objective(model: nn.Module, cfg: TrainConfig, train_images=None) -> tuple[Callable, Callable]:
    """(loss_fn, on_fresh_start) for VisionPuzzleVAE, sharing one vq.CodebookTrainer (cfg.vq_*)."""
    from .vq import CodebookTrainer

    if cfg.vq_init not in ("kmeans", "sample"):
        raise ValueError(f"vq_init must be 'kmeans' or 'sample', got {cfg.vq_init!r}")
    codebook = CodebookTrainer(model, decay=cfg.vq_ema, restart_below=cfg.vq_restart, seed=cfg.seed)
    per_image = cfg.recon == "sigma_image"  # the other recon modes are the Gaussian VAEs' (mean MSE here)

    def loss_fn(module, x, step, total):
        model_ = getattr(module, "module", module)
        if cfg.vq_soft > 0:  # single process: calls the model's parts directly (vq.straight_through_softmax)
            from .vq import straight_through_softmax
            return puzzle_loss(straight_through_softmax(model_, x, cfg.vq_soft), x, cfg.vq_beta, codebook, model_,
                               per_image)
        return puzzle_loss(module(x), x, cfg.vq_beta, codebook, model_, per_image)

    def on_start(module, x):
        if cfg.vq_init == "kmeans":
            codebook.init_kmeans(module, x, seed=cfg.seed)
        else:
            init_codebook_from_data(module, x, cfg.seed)
            codebook.sync(module)
    return loss_fn, on_start


LOSSES = {
    "TinyVAE": gaussian_objective,
    "TinyVAE32": gaussian_objective,
    "StandardVAE": gaussian_objective,
    "TinyVAELinSkip": linskip_objective,
    "TinyVAE32LinSkip": linskip_objective,
    "VisionPuzzleVAE": puzzle_objective,
}


def objective(model: nn.Module, cfg: TrainConfig, train_images=None) -> tuple[Callable, Callable | None]:
    """(loss_fn, on_fresh_start) for the model's family (LOSSES)."""
    return LOSSES[architecture_of(model)](model, cfg, train_images)
