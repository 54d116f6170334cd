"""Distillation: loss terms and their gradients, P trained and saved, VGG16 option, the 3-way report."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from sage_ros.cli import main as cli_main
from sage_ros.compression.checkpoints import CheckpointError, load_model
from sage_ros.compression.datasets import synthetic_images
from sage_ros.compression.distill import (VGG16_CFG, DistillConfig, DistillStudent, VGG16Features,
                                          distill_loss_fn, feature_loss, load_projection)
from sage_ros.compression.optim import make_optimizer
from sage_ros.compression.train_config import TrainConfig
from sage_ros.models import StandardVAE, TinyVAE32


def _setup():
    torch.manual_seed(0)
    teacher = StandardVAE().eval().requires_grad_(False)
    module = DistillStudent(TinyVAE32(), teacher.latent_dim).train()
    x = torch.rand(4, 3, 32, 32)
    return teacher, module, x


def test_every_term_present_and_projection_is_trained():
    teacher, module, x = _setup()
    loss, terms = distill_loss_fn(teacher, teacher.encoder_features, DistillConfig())(module, x, 0, 10)
    assert set(terms) == {"rec", "kl", "lat", "out", "perc"}
    weights = DistillConfig()
    expected = sum(getattr(weights, "w_" + k) * v for k, v in terms.items())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert module.projection.weight.grad.abs().sum() > 0  # P gets gradient ...
    opt_params = {id(p) for g in make_optimizer(module, TrainConfig()).param_groups for p in g["params"]}
    assert id(module.projection.weight) in opt_params  # ... and is in the optimizer
    assert all(p.grad is None for p in teacher.parameters())  # the teacher stays frozen


def test_zero_teacher_weights_never_run_the_teacher():
    _, module, x = _setup()

    class Exploding(torch.nn.Module):
        def encode(self, x):
            raise AssertionError("teacher used")
    cfg = DistillConfig(w_lat=0, w_out=0, w_perc=0)
    loss, terms = distill_loss_fn(Exploding(), None, cfg)(module.student, x, 0, 10)
    assert set(terms) == {"rec", "kl"} and torch.isfinite(loss)


def test_feature_loss_is_zero_for_identical_images_and_positive_otherwise():
    teacher, _, x = _setup()
    assert feature_loss(teacher.encoder_features, x, x).item() == 0.0
    assert feature_loss(teacher.encoder_features, x.flip(-1), x).item() > 0.0


def test_vgg16_weights_file_option(tmp_path):
    torch.manual_seed(0)
    state, c_in, idx = {}, 3, 0
    for v in VGG16_CFG[:9]:  # torchvision layout: features.<index>.weight/bias
        if v == "M":
            idx += 1
            continue
        state[f"features.{idx}.weight"] = torch.randn(v, c_in, 3, 3) * 0.05
        state[f"features.{idx}.bias"] = torch.zeros(v)
        c_in, idx = v, idx + 2
    path = tmp_path / "vgg16.safetensors"
    save_file(state, str(path))
    vgg = VGG16Features(path)
    x = torch.rand(2, 3, 32, 32)
    assert [t.shape[1] for t in vgg(x)] == [64, 128, 256]
    assert feature_loss(vgg, x.flip(-1), x).item() > 0
    save_file({"features.0.weight": state["features.0.weight"]}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError, match="not VGG16"):
        VGG16Features(tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="vgg16_weights"):
        DistillConfig(perceptual="vgg16")


def test_distill_cli_teacher_student_baseline(tmp_path, monkeypatch):
    images = synthetic_images(60, 32)
    monkeypatch.setattr("sage_ros.compression.distill.load_images",
                        lambda source, size, split, **kw: images[:48] if split == "train" else images[48:])
    args = ["distill", "--run-dir", str(tmp_path), "--steps", "4", "--teacher-steps", "2", "--batch-size", "8",
            "--no-progress"]
    assert cli_main(args) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["models"]) == {"teacher", "student", "baseline"}
    assert report["models"]["student"]["params"] == 294_403 and report["models"]["teacher"]["latent_dim"] == 512
    assert report["models"]["student"]["steps"] == report["models"]["baseline"]["steps"] == 4
    assert isinstance(report["verdict"]["psnr_gain_db_vs_baseline"], float)
    assert isinstance(load_model(tmp_path / "student"), TinyVAE32)
    assert isinstance(load_model(tmp_path / "teacher"), StandardVAE)
    assert load_projection(tmp_path / "student" / "projection.safetensors").weight.shape == (64, 512)
    assert not (tmp_path / "baseline" / "projection.safetensors").exists()
    # student and baseline differ only by the teacher terms
    a, b = load_model(tmp_path / "student"), load_model(tmp_path / "baseline")
    assert not torch.equal(a.fc_mu.weight, b.fc_mu.weight)
    # a second run reuses the trained teacher instead of training it again
    mtime = (tmp_path / "teacher" / "model.safetensors").stat().st_mtime_ns
    assert cli_main(args) == 0
    assert (tmp_path / "teacher" / "model.safetensors").stat().st_mtime_ns == mtime
    assert "Distillation" in (tmp_path / "report.md").read_text()
