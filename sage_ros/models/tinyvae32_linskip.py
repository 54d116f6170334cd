"""TinyVAE32LinSkip: TinyVAE32 plus a fixed linear (PCA) path through the latent at its full 32 px (linear_skip.py).

Same interface as TinyVAE32 (3x32x32 in [0,1] -> mu and log sigma^2 of L dims; decode(z) -> 3x32x32 in [0,1]);
TinyVAE32 stays exact beside it. Parameters: TinyVAE32's plus 6,144 L + 3,072 + 3,072 (W_enc, W_dec with bias, m).
"""
from .linear_skip import LinearSkip
from .tinyvae32 import TinyVAE32


class TinyVAE32LinSkip(LinearSkip, TinyVAE32):
    def __init__(self, latent_dim: int = 64):
        super().__init__(latent_dim)
        self._add_linear_path(self.image_size)
