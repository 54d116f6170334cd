"""VisionPuzzleVAE: 3x224x224 in [-1,1] -> 30x30 grid of codes 0..9 (vector quantised).

Params = 332,099 + 267 * L. The caller scales images to [-1,1] explicitly (x * 2 - 1 from [0,1]);
the model never guesses the input range from the data.
"""
import torch
import torch.nn.functional as F
from torch import nn

GRID = 30
NUM_CODES = 10


def _down(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def _up(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class VisionPuzzleVAE(nn.Module):
    image_size = 224
    input_range = (-1.0, 1.0)

    def __init__(self, latent_dim: int = 64, num_codes: int = NUM_CODES):
        super().__init__()
        self.latent_dim = latent_dim
        self.num_codes = num_codes
        self.encoder = nn.Sequential(*_down(3, 32), *_down(32, 64), *_down(64, 128))
        self.to_latent = nn.Conv2d(128, latent_dim, 1)
        self.codebook = nn.Embedding(num_codes, latent_dim)
        nn.init.uniform_(self.codebook.weight, -1.0 / num_codes, 1.0 / num_codes)
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_dim, 128, 1), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            *_up(128, 64), *_up(64, 32),
            nn.ConvTranspose2d(32, 3, 4, stride=2, padding=1),
        )

    def encode_continuous(self, x: torch.Tensor) -> torch.Tensor:
        """N x L x 30 x 30 pre-quantisation latent."""
        h = self.encoder(x)
        h = F.interpolate(h, size=(GRID, GRID), mode="bilinear", align_corners=False)
        return self.to_latent(h)

    def code_distances(self, flat: torch.Tensor) -> torch.Tensor:
        """(M x L latents) -> M x num_codes squared Euclidean distances to the codebook entries."""
        weight = self.codebook.weight
        return flat.pow(2).sum(1, keepdim=True) - 2 * flat @ weight.t() + weight.pow(2).sum(1)[None, :]

    def quantize(self, z_e: torch.Tensor) -> torch.Tensor:
        """Nearest codebook entry per grid cell -> N x 30 x 30 int64 codes."""
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, self.latent_dim)
        return self.code_distances(flat).argmin(dim=1).view(z_e.shape[0], z_e.shape[2], z_e.shape[3])

    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """N x 30 x 30 codes -> N x L x 30 x 30 codebook vectors."""
        return self.codebook(codes.long()).permute(0, 3, 1, 2)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantize(self.encode_continuous(x))

    def decode(self, codes_or_z: torch.Tensor) -> torch.Tensor:
        """Accepts codes (N x 30 x 30 integers) or quantised vectors (N x L x 30 x 30)."""
        z_q = self.embed(codes_or_z) if codes_or_z.dim() == 3 else codes_or_z
        out = self.decoder(z_q)
        out = F.interpolate(out, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return torch.tanh(out)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (reconstruction, z_e, z_q, codes); z_q passes gradients straight through to z_e."""
        z_e = self.encode_continuous(x)
        codes = self.quantize(z_e)
        z_q = self.embed(codes)
        z_st = z_e + (z_q - z_e).detach()
        return self.decode(z_st), z_e, z_q, codes


def vq_loss(z_e: torch.Tensor, z_q: torch.Tensor, beta: float = 0.25) -> torch.Tensor:
    """Codebook loss + beta * commitment loss (van den Oord et al., 2017)."""
    return F.mse_loss(z_q, z_e.detach()) + beta * F.mse_loss(z_e, z_q.detach())
