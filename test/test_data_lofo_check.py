"""scripts/studies/lofo_check.py on tiny data: model against the baseline fitted on the other half of a held-out family."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def lofo():
    spec = importlib.util.spec_from_file_location("lofo_check", REPO / "scripts" / "studies" / "lofo_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Codec:
    """A stand-in model: 'perfect' returns its input (plus a little noise); otherwise its negative."""

    def __init__(self, perfect: bool, size: int = 32):
        self.perfect, self.image_size, self.input_range, self.is_vq = perfect, size, (0.0, 1.0), False
        self.label = "toy"

    def encode(self, x):
        return {"mu": x, "logvar": np.zeros_like(x)}

    def decode(self, z):
        if self.perfect:
            return np.clip(z + np.random.default_rng(0).normal(0, 0.002, z.shape), 0, 1).astype(np.float32)
        return (1.0 - z).astype(np.float32)


def _photos(seed, n=3):  # textured "photos" that 8 principal components cannot hold
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (90, 120, 3), dtype=np.uint8) for _ in range(n)]


def test_rows_compare_model_and_baseline_on_windows_and_whole_frames(lofo):
    models = {"good": (Codec(True), ("pca", 8)), "bad": (Codec(False), ("pca", 8))}
    result = lofo.lofo_rows(_photos(0), _photos(1), models, n_fit={32: 40}, n_eval={32: 12}, seed=0)
    good, bad = result["rows"]
    assert good["all"]["n"] == 15 and good["whole_frames"]["n"] == 3 and good["windows"]["n"] == 12
    assert good["baseline"] == "PCA-8" and good["all"]["baseline_psnr"] == bad["all"]["baseline_psnr"]
    assert good["all"]["delta_db"] > 5 and bad["all"]["delta_db"] < 0   # the sign says who wins
    assert "| good | 32 | PCA-8 |" in lofo.markdown({**result, "family": "f", "fit_files": ["a/x.jpg"],
                                                     "eval_files": ["a/y.jpg"], "command": "c"})


def test_pairs_report_agreement_per_part(lofo):
    result = lofo.lofo_rows(_photos(0), _photos(1), {}, pairs={"q": (Codec(True), Codec(True))},
                            n_fit={32: 10}, n_eval={32: 5})
    (pair,) = result["pairs"]
    assert pair["whole_frames"]["n"] == 3 and pair["windows"]["n"] == 5
    assert abs(pair["windows"]["delta_psnr"]) < 1e-9 and pair["windows"]["mu_cosine"] > 0.999
