"""TinyVAERes: a variant of TinyVAE with the same interface (3x64x64 in [0,1] -> flat latent of L dims,
mu and log sigma^2) and at most 2x the seed encoder's multiply-adds. The seed TinyVAE stays exact beside it.

What changes, and why (each measured against the seed on held-out data, see models/reports):
- Stem: PixelUnshuffle(2) (lossless 3x64x64 -> 12x32x32) + 1x1 conv, instead of a 3-filter depthwise 3x3
  stride-2 conv, which keeps only 3 linear features of each 2x2 neighbourhood: the seed discards 3/4 of the
  input before the first non-linearity.
- One residual depthwise-separable block at 8x8 in the encoder and one in the decoder (cheap at 64 px^2).
- No ReLU straight after fc_decode: the decoder's first map is a linear function of z (the part PCA gets
  right), so half of it is not thrown away before the first convolution.
- Decoder: ConvTranspose2d(k4, s2, p1) upsampling 64->32->16->3 (k4 s2 covers every output pixel evenly, no
  checkerboard), GroupNorm + ReLU between, sigmoid.

Encoder multiply-adds per image (test/test_models.py checks the budget): 0.81 M + 8192 L, against the seed's
0.39 M + 8192 L (L=8: 1.75x; L=64: 1.33x).
"""
from torch import nn

from .common import GaussianVAE


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(4, channels), channels)


def _separable_down(c_in: int, c_out: int) -> nn.Sequential:
    """Depthwise 3x3 stride 2 -> pointwise 1x1 -> GroupNorm -> ReLU (the seed's block)."""
    return nn.Sequential(nn.Conv2d(c_in, c_in, 3, stride=2, padding=1, groups=c_in), nn.Conv2d(c_in, c_out, 1),
                         _norm(c_out), nn.ReLU(inplace=True))


class ResidualSeparable(nn.Module):
    """Post-activation (encoder): ReLU(x + GN(pw(dw3x3(x)))). Pre-activation (decoder, `pre=True`):
    x + GN(pw(dw3x3(ReLU(x)))), which keeps an identity path from the linear fc_decode output."""

    def __init__(self, channels: int, pre: bool = False):
        super().__init__()
        self.pre = pre
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, groups=channels),
                                  nn.Conv2d(channels, channels, 1), _norm(channels))
        self.act = nn.ReLU()

    def forward(self, x):
        if self.pre:
            return x + self.body(self.act(x))
        return self.act(x + self.body(x))


def _up(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), _norm(c_out), nn.ReLU(inplace=True))


class TinyVAERes(GaussianVAE):
    image_size = 64
    input_range = (0.0, 1.0)
    bottleneck_shape = (64, 8, 8)

    def __init__(self, latent_dim: int = 64):
        super().__init__()
        if not 1 <= latent_dim <= 4096:
            raise ValueError(f"latent_dim must be in [1, 4096], got {latent_dim}")
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(
            nn.PixelUnshuffle(2), nn.Conv2d(12, 16, 1), _norm(16), nn.ReLU(inplace=True),   # 16 x 32 x 32
            _separable_down(16, 32),                                                     # 32 x 16 x 16
            _separable_down(32, 64),                                                     # 64 x 8 x 8
            ResidualSeparable(64),
        )
        self.fc_mu = nn.Linear(64 * 8 * 8, latent_dim)
        self.fc_logvar = nn.Linear(64 * 8 * 8, latent_dim)
        self.fc_decode = nn.Linear(latent_dim, 64 * 8 * 8)
        self.decoder = nn.Sequential(
            ResidualSeparable(64, pre=True),                                             # no ReLU before it
            _up(64, 32), _up(32, 16),                                                    # 16 x 32 x 32
            nn.ConvTranspose2d(16, 3, 4, stride=2, padding=1),                           # 3 x 64 x 64
            nn.Sigmoid(),
        )
