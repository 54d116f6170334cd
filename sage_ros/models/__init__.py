"""nn.Module definitions, and the quantized-weights file format (quantized.py) that rebuilds them.
Imports torch and, of sage_ros, only the leaf helper sage_ros.atomic.

Architectures are fixed by docs/design.md ("Models"); parameter counts are asserted in test/test_models.py.
"""
from .tinyvae import TinyVAE
from .tinyvae32 import TinyVAE32
from .tinyvae32_linskip import TinyVAE32LinSkip
from .tinyvae_linskip import TinyVAELinSkip
from .standard_vae import StandardVAE
from .puzzle_vae import VisionPuzzleVAE

ARCHITECTURES = {
    "TinyVAE": TinyVAE,
    "TinyVAE32": TinyVAE32,
    "TinyVAE32LinSkip": TinyVAE32LinSkip,  # variant beside TinyVAE32 (same interface, own name and bundle)
    "TinyVAELinSkip": TinyVAELinSkip,  # variant beside the seed (docs/design.md: same interface, own name and bundle)
    "StandardVAE": StandardVAE,
    "VisionPuzzleVAE": VisionPuzzleVAE,
}


def build_model(architecture: str, latent_dim: int | None = None):
    """Construct a model by its architecture name (docs/design.md); `latent_dim` None keeps the architecture's default."""
    try:
        cls = ARCHITECTURES[architecture]
    except KeyError:
        raise ValueError(f"unknown architecture {architecture!r}; expected one of {sorted(ARCHITECTURES)}") from None
    return cls() if latent_dim is None else cls(latent_dim=latent_dim)


__all__ = ["TinyVAE", "TinyVAE32", "TinyVAE32LinSkip", "TinyVAELinSkip", "StandardVAE", "VisionPuzzleVAE",
           "ARCHITECTURES", "build_model"]
