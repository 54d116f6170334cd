"""TinyVAELinSkip: the seed TinyVAE plus a linear skip path through the latent, initialised from PCA.

Same interface as TinyVAE (3x64x64 in [0,1] -> mu and log sigma^2 of L dims; decode(z) -> 3x64x64 in [0,1]); the
seed TinyVAE stays exact beside it. Why: PCA with L components is the best *linear* code of size L, and the
seed's purely convolutional path (ReLUs, a sigmoid, a 3-filter stride-2 first layer) cannot even represent it,
so after training it still loses to PCA on held-out photos. Here

    mu      = W_enc (area-downsampled x - m) + fc_mu(conv features)
    image   = clamp(bilinear_up(W_dec z + m) + conv_decoder(z), 0, 1)

with W_enc, W_dec and m set from a PCA of training images at 32x32 before the first step (`init_linear_path`,
whitened so each coefficient has unit variance, as the N(0, I) prior expects) and then kept fixed, fc_mu and the
conv decoder's last layer starting at zero and log sigma^2 starting small. Training starts at the PCA
reconstruction; the non-linear paths learn what it leaves.

Encoder multiply-adds: the seed's 0.39 M + 8192 L plus 3072 L for W_enc (L=4: 1.03x the seed; L=64: 1.21x).
Parameters: the seed's 31,073 + 12,290 L plus 6,144 L + 3,072 + 3,072 (W_enc, W_dec with bias, m).
"""
import torch
import torch.nn.functional as F
from torch import nn

from .tinyvae import TinyVAE

LOW = 32  # side of the linear path's image (PCA components for L <= 64 are smooth; 32 px keeps them)


class TinyVAELinSkip(TinyVAE):
    def __init__(self, latent_dim: int = 64):
        super().__init__(latent_dim)
        low_dim = 3 * LOW * LOW
        self.lin_enc = nn.Linear(low_dim, latent_dim, bias=False)
        self.lin_dec = nn.Linear(latent_dim, low_dim)
        self.register_buffer("low_mean", torch.zeros(low_dim))
        self.decoder[-1] = nn.Identity()  # the seed's final sigmoid: the sum of both paths is clamped instead
        # The linear path is fixed once set from data: Adam moves every weight by ~lr per step whatever its scale,
        # which scrambles the small whitened-PCA weights (|w| ~ 0.005) within the warm-up (measured: 16.9 dB at
        # the PCA start, 8.6 dB five steps later). The non-linear paths learn what PCA leaves.
        for param in (self.lin_enc.weight, self.lin_dec.weight, self.lin_dec.bias):
            param.requires_grad_(False)
        with torch.no_grad():  # start as the linear path alone (a PCA code once init_linear_path has run)
            self.fc_mu.weight.zero_()
            self.fc_mu.bias.zero_()
            self.fc_logvar.weight.mul_(0.01)
            self.fc_logvar.bias.fill_(-6.0)
            last = self.decoder[-2]
            last.weight.zero_()
            last.bias.zero_()

    @staticmethod
    def low(x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, LOW).flatten(1)  # exact 2x2 area average at 64 px (INTER_AREA's result)

    def encode(self, x: torch.Tensor):
        h = self.encoder(x).flatten(1)
        mu = self.lin_enc(self.low(x) - self.low_mean) + self.fc_mu(h)
        return mu, self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        low = (self.lin_dec(z) + self.low_mean).view(-1, 3, LOW, LOW)
        up = F.interpolate(low, scale_factor=64 // LOW, mode="bilinear", align_corners=False)
        residual = self.decoder(self.fc_decode(z).view(-1, *self.bottleneck_shape))
        return (up + residual).clamp(0.0, 1.0)

    @torch.no_grad()
    def init_linear_path(self, x: torch.Tensor) -> None:
        """W_enc, W_dec, m <- whitened PCA of a batch of training images (N x 3 x 64 x 64 in [0, 1])."""
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
