"""StandardVAE: the 32x32 teacher for distillation. 8,664,195 params, latent 512."""
import torch
from torch import nn

from .common import GaussianVAE


def _down(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def _up(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class StandardVAE(GaussianVAE):
    image_size = 32
    input_range = (0.0, 1.0)
    bottleneck_shape = (512, 2, 2)

    def __init__(self, latent_dim: int = 512):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(*_down(3, 64), *_down(64, 128), *_down(128, 256), *_down(256, 512))
        self.fc_mu = nn.Linear(512 * 2 * 2, latent_dim)
        self.fc_logvar = nn.Linear(512 * 2 * 2, latent_dim)
        self.fc_decode = nn.Linear(latent_dim, 512 * 2 * 2)
        self.decoder = nn.Sequential(
            *_up(512, 256), *_up(256, 128), *_up(128, 64),
            nn.ConvTranspose2d(64, 3, 4, stride=2, padding=1),
            nn.Sigmoid(),
        )

    def encoder_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Intermediate encoder maps after each down block (perceptual-loss features)."""
        feats = []
        for i in range(0, len(self.encoder), 3):
            x = self.encoder[i + 2](self.encoder[i + 1](self.encoder[i](x)))
            feats.append(x)
        return feats
