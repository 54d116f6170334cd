"""Architectures are fixed by docs/design.md ("Models"): exact parameter counts, shapes, ranges, eval determinism."""
import pytest
import torch

from sage_ros.models import StandardVAE, TinyVAE, TinyVAE32, VisionPuzzleVAE, build_model
from sage_ros.models.puzzle_vae import vq_loss


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("latent", [4, 8, 16, 32, 64])
def test_tinyvae_param_count(latent):
    assert n_params(TinyVAE(latent)) == 31_073 + 12_290 * latent


def test_documented_totals():
    assert n_params(TinyVAE(64)) == 817_633
    assert n_params(TinyVAE(4)) == 80_233
    assert n_params(TinyVAE32()) == 294_403
    assert n_params(StandardVAE()) == 8_664_195
    assert n_params(VisionPuzzleVAE()) == 349_187


@pytest.mark.parametrize("latent", [8, 16, 64, 100])
def test_puzzle_param_formula(latent):
    assert n_params(VisionPuzzleVAE(latent)) == 332_099 + 267 * latent


@pytest.mark.parametrize("cls,size,latent", [(TinyVAE, 64, 16), (TinyVAE32, 32, 64), (StandardVAE, 32, 512)])
def test_gaussian_vae_shapes_and_range(cls, size, latent):
    torch.manual_seed(0)
    model = cls(latent).eval()
    x = torch.rand(3, 3, size, size)
    recon, mu, logvar = model(x)
    assert recon.shape == x.shape
    assert mu.shape == logvar.shape == (3, latent)
    assert recon.min() >= 0 and recon.max() <= 1
    # eval: z = mu exactly, so the reconstruction is decode(mu) and repeatable
    assert torch.equal(recon, model.decode(mu))
    assert torch.equal(recon, model(x)[0])


def test_training_mode_samples():
    torch.manual_seed(0)
    model = TinyVAE(8).train()
    x = torch.rand(2, 3, 64, 64)
    assert not torch.equal(model(x)[0], model(x)[0])


def test_puzzle_shapes_codes_and_range():
    torch.manual_seed(0)
    model = VisionPuzzleVAE().eval()
    x = torch.rand(2, 3, 224, 224) * 2 - 1
    recon, z_e, z_q, codes = model(x)
    assert recon.shape == x.shape and recon.min() >= -1 and recon.max() <= 1
    assert z_e.shape == z_q.shape == (2, 64, 30, 30)
    assert codes.shape == (2, 30, 30) and codes.min() >= 0 and codes.max() <= 9
    assert torch.equal(model.encode(x), codes)
    # straight-through: z_e + (z_q - z_e) equals z_q up to rounding
    assert torch.allclose(model.decode(codes), recon, atol=1e-5)
    assert vq_loss(z_e, z_q).item() >= 0


def test_puzzle_codes_are_nearest_codebook_entries():
    torch.manual_seed(1)
    model = VisionPuzzleVAE(4).eval()
    z_e = torch.randn(1, 4, 30, 30)
    codes = model.quantize(z_e)
    brute = ((z_e.permute(0, 2, 3, 1)[..., None, :] - model.codebook.weight) ** 2).sum(-1).argmin(-1)
    assert torch.equal(codes, brute)


def test_build_model_rejects_unknown():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("ResNet")
    assert isinstance(build_model("TinyVAE", 8), TinyVAE)
