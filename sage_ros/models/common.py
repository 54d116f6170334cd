"""Pieces shared by the Gaussian VAEs: reparameterisation and the KL term."""
import torch


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, training: bool) -> torch.Tensor:
    """z = mu in eval mode (deterministic); a sample mu + sigma * eps only while training."""
    if not training:
        return mu
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) summed over latent dims, averaged over the batch."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()


class GaussianVAE(torch.nn.Module):
    """The encode / decode / forward shared by TinyVAE, TinyVAE32 and StandardVAE.

    Subclasses build `encoder`, `fc_mu`, `fc_logvar`, `fc_decode`, `decoder` and set `bottleneck_shape`
    (C, H, W) — the encoder's output map, which `fc_decode` feeds back to the decoder.
    """

    bottleneck_shape: tuple[int, int, int]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x).flatten(1)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.fc_decode(z).view(-1, *self.bottleneck_shape))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        return self.decode(reparameterize(mu, logvar, self.training)), mu, logvar
