"""`sage-ros evaluate --bundle models/<any shipped bundle>` (no --run) measures the bundle on its own beside the
PCA baseline (and the palette baseline for the puzzle); --run takes a bundle directory; a bundle from another
model is labelled cross-model. Few images: these check the plumbing, the shipped numbers are in the README."""
import json
from pathlib import Path

from sage_ros.cli import main

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.parent.name for p in (REPO / "models").glob("*/bundle.json"))
CHEAP = ["--limit", "6", "--pca-train-limit", "40", "--palette-train-limit", "20", "--no-progress"]


def test_every_shipped_bundle_can_be_evaluated_on_its_own(tmp_path, capsys):
    """One run over all shipped bundles (images and baselines are shared per input size and latent size)."""
    out = tmp_path / "eval"
    bundles = [arg for name in SHIPPED for arg in ("--bundle", str(REPO / "models" / name))]
    assert main(["evaluate", *bundles, "--out", str(out), *CHEAP]) == 0
    report = json.loads((out / "report.json").read_text())
    printed, table = capsys.readouterr().out, (out / "report.md").read_text()
    assert [row["name"] for row in report["bundles"]] == SHIPPED
    for row in report["bundles"]:
        name = row["name"]
        assert row["n_images"] == 6 and 5 < row["psnr"] < 60 and 0 < row["ssim"] <= 1, row
        kinds = {report["baselines"][b]["kind"] for b in row["baselines"]}
        if row["architecture"] == "VisionPuzzleVAE":
            assert kinds == {"pca", "palette"} and row["code_agreement"] > 50, row  # vs its own torch weights
        else:
            assert kinds == {"pca"} and row["mu_cosine"] > 0.9, row
        assert row["vs"].startswith("its own torch weights"), row
        assert f"{name}: PSNR" in printed and "| " + name + " |" in table


def test_run_takes_a_bundle_and_a_bundle_from_another_model_is_labelled_cross_model(tmp_path):
    out = tmp_path / "eval"
    assert main(["evaluate", "--run", str(REPO / "models" / "tinyvae_l64_fp32"), "--bundle", "tinyvae_l64_fp32",
                 "--bundle", "tinyvae_linskip_l64_int8", "--out", str(out), "--no-pca", *CHEAP]) == 0
    variants = {v.get("bundle", v["name"]): v for v in json.loads((out / "report.json").read_text())["variants"]}
    same = next(v for k, v in variants.items() if k.endswith("tinyvae_l64_fp32"))
    other = next(v for k, v in variants.items() if k.endswith("tinyvae_linskip_l64_int8"))
    assert same["comparison"] == "same model" and "[cross-model]" not in same["name"]
    assert same["mu_cosine"] > 0.999
    assert other["comparison"].startswith("cross-model") and other["name"].endswith("[cross-model]")
    assert "[cross-model]" in (out / "report.md").read_text()
