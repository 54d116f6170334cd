"""TinyVAE32: the 32x32 distillation student. 294,403 params at L=64."""
from torch import nn

from .common import GaussianVAE


def _down(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def _up(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1),
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class TinyVAE32(GaussianVAE):
    image_size = 32
    input_range = (0.0, 1.0)
    bottleneck_shape = (128, 2, 2)

    def __init__(self, latent_dim: int = 64):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(*_down(3, 16), *_down(16, 32), *_down(32, 64), *_down(64, 128))
        self.fc_mu = nn.Linear(128 * 2 * 2, latent_dim)
        self.fc_logvar = nn.Linear(128 * 2 * 2, latent_dim)
        self.fc_decode = nn.Linear(latent_dim, 128 * 2 * 2)
        self.decoder = nn.Sequential(
            *_up(128, 64), *_up(64, 32), *_up(32, 16),
            nn.ConvTranspose2d(16, 3, 3, stride=2, padding=1, output_padding=1),
            nn.Sigmoid(),
        )
