"""What `sage-ros train --help` and the README say about the models follows sage_ros.models.ARCHITECTURES, and
train ends by printing its held-out PSNR."""
import json
from pathlib import Path

import pytest

from sage_ros.cli import main
from sage_ros.models import ARCHITECTURES

REPO = Path(__file__).resolve().parents[1]


def test_train_help_names_every_architecture_and_the_default(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"Train one of the {len(ARCHITECTURES)} models" in text
    assert all(name in text for name in ARCHITECTURES)
    assert "--arch" in text and "(default: TinyVAE" in text


def test_the_readme_train_row_names_every_architecture():
    row = next(line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("| `sage-ros train`"))
    assert all(name in row for name in ARCHITECTURES), row


def test_train_ends_with_the_held_out_psnr(tmp_path):
    from sage_ros.compression.train_cmd import held_out_line

    (tmp_path / "metrics.json").write_text(json.dumps({"held_out_torch": {"images": 1500, "psnr": 21.398,
                                                                          "ssim": 0.4939}}))
    assert held_out_line(tmp_path) == "held-out test split (1500 images): PSNR 21.40 dB, SSIM 0.494"
    assert held_out_line(tmp_path / "missing") is None


def test_a_train_run_prints_its_held_out_psnr(tmp_path, capsys):
    assert main(["train", "--arch", "TinyVAE", "--latent-dim", "4", "--data", "synthetic", "--steps", "2",
                 "--batch-size", "4", "--run-dir", str(tmp_path / "run"), "--no-progress", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "held-out test split (" in printed and " dB, SSIM " in printed, printed


def test_the_training_data_is_said_in_words():
    from sage_ros.compression.report import training_data_words

    online = {"train_images": "online:0:64", "steps": 30000, "batch_size": 64, "world_size": 1,
              "train_data": {"kind": "online random-resized crops", "photos": 20, "video_frames": 480}}
    assert training_data_words(online) == "1,920,000 fresh random-resized 64 px crops (seed 0) of 20 photos and " \
                                          "480 video frames"
    assert training_data_words({"train_images": 50000, "train_data": {"kind": "fixed images", "count": 50000}}) \
        == "50,000 fixed training images"
