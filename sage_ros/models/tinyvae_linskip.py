"""TinyVAELinSkip: the seed TinyVAE plus a fixed linear (PCA) path through the latent (linear_skip.py).

Same interface as TinyVAE (3x64x64 in [0,1] -> mu and log sigma^2 of L dims; decode(z) -> 3x64x64 in [0,1]); the
seed TinyVAE stays exact beside it. The linear path works on the 2x2 area average (32 px): PCA components for
L <= 64 are smooth, and 32 px keeps them.

Encoder multiply-adds: the seed's 0.39 M + 8192 L plus 3072 L for W_enc (L=4: 1.03x the seed; L=64: 1.21x).
Parameters: the seed's 31,073 + 12,290 L plus 6,144 L + 3,072 + 3,072 (W_enc, W_dec with bias, m).
"""
from .linear_skip import LinearSkip
from .tinyvae import TinyVAE

LOW = 32  # side of the linear path's image


class TinyVAELinSkip(LinearSkip, TinyVAE):
    def __init__(self, latent_dim: int = 64):
        super().__init__(latent_dim)
        self._add_linear_path(LOW)
