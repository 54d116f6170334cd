"""TinyVAE32: the 32x32 distillation student. 294,403 params at L=64."""
import torch
from torch import nn

from .common import reparameterize


def _down(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def _up(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1),
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class TinyVAE32(nn.Module):
    image_size = 32
    input_range = (0.0, 1.0)

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

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x).flatten(1)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.fc_decode(z).view(-1, 128, 2, 2))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar, self.training)), mu, logvar
