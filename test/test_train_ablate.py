"""Latent ablation: trained-or-reused runs, real file bytes, drift, Pareto front, recommendation, figure."""
import json

import pytest
import torch

from sage_ros.cli import main as cli_main
from sage_ros.compression.ablate import AblationConfig, ablate, pareto_front, recommend
from sage_ros.compression.datasets import synthetic_images
from sage_ros.compression.train import TrainConfig, train
from sage_ros.models import TinyVAE


@pytest.fixture(scope="module")
def images():
    return synthetic_images(48, 64), synthetic_images(12, 64, seed=3)


def test_pareto_and_recommendation_rule():
    rows = [{"latent": 4, "precision": "fp32", "bits": 32, "bytes": 300, "psnr": 20.0, "mu_cosine": 1.0,
             "ratio_vs_fp32": 1.0},
            {"latent": 4, "precision": "int4", "bits": 4, "bytes": 60, "psnr": 19.5, "mu_cosine": 0.95,
             "ratio_vs_fp32": 5.0},
            {"latent": 4, "precision": "int8", "bits": 8, "bytes": 100, "psnr": 19.9, "mu_cosine": 0.999,
             "ratio_vs_fp32": 3.0},
            {"latent": 64, "precision": "fp32", "bits": 32, "bytes": 3000, "psnr": 20.5, "mu_cosine": 1.0,
             "ratio_vs_fp32": 1.0}]
    assert [(r["latent"], r["precision"]) for r in pareto_front(rows)] == [(4, "int4"), (4, "int8"), (4, "fp32"),
                                                                          (64, "fp32")]
    # the rule: the smallest L whose fp32 beats PCA-L by >= pca_margin_db and is within the tolerance of the best
    pca = [{"latent": 4, "precision": "pca", "bits": 32, "bytes": 400, "psnr": 18.5, "mu_cosine": None},
           {"latent": 64, "precision": "pca", "bits": 32, "bytes": 4000, "psnr": 19.0, "mu_cosine": None}]
    rec = recommend(rows + pca, AblationConfig())
    assert (rec["latent"], rec["precision"], rec["rule_met"]) == (4, "fp32", True)
    assert rec["quantized_ok"] == ["int8"]  # int4's latent drifts too much to ship beside it
    assert recommend(rows + pca, AblationConfig(min_mu_cosine=0.9))["quantized_ok"] == ["int4", "int8"]
    assert recommend(rows + pca, AblationConfig(psnr_tolerance_db=0.1))["latent"] == 64
    pca[0]["psnr"] = 19.8  # L=4 now beats its PCA by only 0.2 dB: L=64 (+1.5 dB) is the smallest that clears 1 dB
    assert recommend(rows + pca, AblationConfig())["latent"] == 64
    pca[1]["psnr"] = 20.4
    rec = recommend(rows + pca, AblationConfig())  # no L clears 1 dB: the larger margin among those near the best
    assert not rec["rule_met"] and rec["latent"] == 4 and "RULE NOT MET" in rec["why"]
    rec = recommend(rows + pca, AblationConfig(psnr_tolerance_db=0.3))  # L=4 has the larger margin but is not near
    assert not rec["rule_met"] and rec["latent"] == 64
    assert all(r["precision"] != "pca" for r in pareto_front(rows + pca))


def test_ablate_reuses_trained_runs_and_measures_files(tmp_path, images):
    train_images, test_images = images
    cfg = TrainConfig(steps=3, batch_size=8, progress_bar=False)
    torch.manual_seed(0)
    train(TinyVAE(4), cfg, tmp_path / "L4", train_images=train_images, test_images=test_images)  # "GPU-trained"
    weights = tmp_path / "L4" / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    result = ablate(cfg, tmp_path, AblationConfig(latents=(4, 8)), train_images=train_images, test_images=test_images)
    assert weights.stat().st_mtime_ns == mtime  # reused, not retrained
    assert (tmp_path / "L8" / "model.safetensors").exists()  # the missing one was trained
    rows = {(r["latent"], r["precision"]): r for r in result["rows"]}
    assert set(rows) == {(L, p) for L in (4, 8) for p in ("fp32", "int8", "int4", "pca")}
    assert rows[(8, "pca")]["bytes"] == 4 * 9 * 64 * 64 * 3 and rows[(8, "pca")]["psnr"] > rows[(4, "pca")]["psnr"]
    for (latent, precision), row in [(k, r) for k, r in rows.items() if k[1] != "pca"]:
        assert row["bytes"] == (tmp_path / f"L{latent}" / f"{precision}.safetensors").stat().st_size
        assert row["n_images"] == len(test_images)
    assert rows[(4, "fp32")]["mu_rel_l2"] == 0.0 and rows[(8, "int8")]["mu_rel_l2"] > 0
    assert rows[(8, "int8")]["bytes"] < rows[(8, "fp32")]["bytes"] / 3
    assert rows[(8, "int8")]["mu_rel_l2"] < rows[(8, "int4")]["mu_rel_l2"]
    saved = json.loads((tmp_path / "ablation.json").read_text())
    assert saved["recommendation"]["why"] and (saved["recommendation"]["latent"] in (4, 8))
    assert (tmp_path / "ablation.png").stat().st_size > 10_000
    assert "**Ship:**" in (tmp_path / "ablation.md").read_text()


def test_ablate_cli_train_only(tmp_path, monkeypatch, images):
    train_images, test_images = images
    monkeypatch.setattr("sage_ros.compression.ablate.load_images",
                        lambda source, size, split, **kw: train_images if split == "train" else test_images)
    assert cli_main(["ablate", "--run-dir", str(tmp_path), "--latents", "4", "--steps", "2", "--batch-size", "8",
                     "--no-progress", "--train-only"]) == 0
    assert (tmp_path / "L4" / "model.safetensors").exists() and not (tmp_path / "ablation.json").exists()
