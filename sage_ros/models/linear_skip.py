"""LinearSkip: a fixed PCA path through the latent beside a Gaussian VAE's convolutional paths (the *LinSkip variants).

    mu      = W_enc (area-downsampled x - m) + fc_mu(conv features)
    image   = clamp(bilinear_up(W_dec z + m) + conv_decoder(z), 0, 1)

Why: PCA with L components is the best *linear* code of size L, and a purely convolutional path cannot even
represent it (ReLUs, a final sigmoid, per-image normalisation in the encoder that hides a window's absolute colour).
On smooth views (sky, walls, a small window area-resized up) the seed models stay 2-5 dB below PCA
(models/reports/lofo/); here training starts at the PCA reconstruction and the non-linear paths learn what it leaves.

W_enc, W_dec and m come from a PCA of training images at `low_side` px (`init_linear_path`, whitened so each
coefficient has unit variance, as the N(0, I) prior expects) before the first step and then stay fixed: Adam moves
every weight by ~lr per step whatever its scale, which scrambles the small whitened-PCA weights (|w| ~ 0.005) within
the warm-up (measured: 16.9 dB at the PCA start, 8.6 dB five steps later). fc_mu and the conv decoder's last layer
start at zero and log sigma^2 starts small, so the untrained model is exactly the PCA code.
"""
import torch
import torch.nn.functional as F
from torch import nn


class LinearSkip:
    """Mixin for a GaussianVAE subclass: call `_add_linear_path(low_side)` at the end of __init__; the base's decoder
    must end with (last conv, Sigmoid)."""

    low_side: int

    def _add_linear_path(self, low_side: int) -> None:
        self.low_side = low_side
        low_dim = 3 * low_side * low_side
        self.lin_enc = nn.Linear(low_dim, self.latent_dim, bias=False)
        self.lin_dec = nn.Linear(self.latent_dim, low_dim)
        self.register_buffer("low_mean", torch.zeros(low_dim))
        self.decoder[-1] = nn.Identity()  # the base's final sigmoid: the sum of both paths is clamped instead
        for param in (self.lin_enc.weight, self.lin_dec.weight, self.lin_dec.bias):
            param.requires_grad_(False)  # fixed once set from data (see the module docstring)
        with torch.no_grad():  # start as the linear path alone (a PCA code once init_linear_path has run)
            self.fc_mu.weight.zero_()
            self.fc_mu.bias.zero_()
            self.fc_logvar.weight.mul_(0.01)
            self.fc_logvar.bias.fill_(-6.0)
            last = self.decoder[-2]
            last.weight.zero_()
            last.bias.zero_()

    def low(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.low_side:  # exact k x k area averages (INTER_AREA's result at an integer factor)
            x = F.adaptive_avg_pool2d(x, self.low_side)
        return x.flatten(1)

    def encode(self, x: torch.Tensor):
        h = self.encoder(x).flatten(1)
        mu = self.lin_enc(self.low(x) - self.low_mean) + self.fc_mu(h)
        return mu, self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        low = (self.lin_dec(z) + self.low_mean).view(-1, 3, self.low_side, self.low_side)
        if self.low_side != self.image_size:
            low = F.interpolate(low, scale_factor=self.image_size // self.low_side, mode="bilinear",
                                align_corners=False)
        residual = self.decoder(self.fc_decode(z).view(-1, *self.bottleneck_shape))
        return (low + residual).clamp(0.0, 1.0)

    @torch.no_grad()
    def init_linear_path(self, x: torch.Tensor) -> None:
        """W_enc, W_dec, m <- whitened PCA of a batch of training images (N x 3 x S x S in [0, 1])."""
        low = self.low(x).double()
        mean = low.mean(0)
        _, s, vh = torch.linalg.svd(low - mean, full_matrices=False)
        k = self.latent_dim
        if vh.shape[0] < k:
            raise ValueError(f"PCA init needs at least {k} images, got {len(x)}")
        std = (s[:k] / (len(low) - 1) ** 0.5).clamp_min(1e-6)  # std of each principal coefficient
        self.low_mean.copy_(mean.float())
        self.lin_enc.weight.copy_((vh[:k] / std[:, None]).float())
        self.lin_dec.weight.copy_((vh[:k].T * std[None, :]).float())
        self.lin_dec.bias.zero_()
