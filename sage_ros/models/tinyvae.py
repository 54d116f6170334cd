"""TinyVAE: the SAGE IRP vision encoder. 3x64x64 in [0,1] -> flat latent of L dims.

Params = 31,073 + 12,290 * L.
"""
from torch import nn

from .common import GaussianVAE


def _separable_block(c_in: int, c_out: int) -> nn.Sequential:
    """Depthwise 3x3 stride 2 -> pointwise 1x1 -> GroupNorm -> ReLU; halves the resolution."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, 3, stride=2, padding=1, groups=c_in),
        nn.Conv2d(c_in, c_out, 1),
        nn.GroupNorm(min(4, c_out), c_out),
        nn.ReLU(inplace=True),
    )


class TinyVAE(GaussianVAE):
    image_size = 64
    input_range = (0.0, 1.0)
    bottleneck_shape = (64, 8, 8)

    def __init__(self, latent_dim: int = 64):
        super().__init__()
        if not 1 <= latent_dim <= 4096:
            raise ValueError(f"latent_dim must be in [1, 4096], got {latent_dim}")
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(_separable_block(3, 16), _separable_block(16, 32), _separable_block(32, 64))
        self.fc_mu = nn.Linear(64 * 8 * 8, latent_dim)
        self.fc_logvar = nn.Linear(64 * 8 * 8, latent_dim)
        self.fc_decode = nn.Linear(latent_dim, 64 * 8 * 8)
        self.decoder = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(16, 3, 3, stride=2, padding=1, output_padding=1),
            nn.Sigmoid(),
        )
