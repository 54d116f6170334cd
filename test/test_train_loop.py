"""Training loop: losses, schedule, kill-and-resume determinism, DDP over 2 CPU processes, model files."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sage_ros.compression.checkpoints import CheckpointError, load_checkpoint, load_model, read_meta
from sage_ros.compression.datasets import synthetic_images, to_model_input
from sage_ros.compression.progress import read_progress
from sage_ros.compression.held_out import evaluate_reconstruction
from sage_ros.compression.losses import gaussian_vae_loss, kl_weight
from sage_ros.compression.optim import lr_lambda
from sage_ros.compression.train import train
from sage_ros.compression.train_config import TrainConfig
from sage_ros.models import TinyVAE32, VisionPuzzleVAE

REPO = Path(__file__).resolve().parents[1]
TRAIN_ARGS = ["train", "--arch", "TinyVAE", "--latent-dim", "4", "--data", "synthetic", "--steps", "60",
              "--batch-size", "8", "--checkpoint-every", "5", "--no-progress", "--seed", "3"]


def _env():
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return env


def _cli(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "sage_ros.cli", *args], env=_env(), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)


def test_loss_reductions_and_kl_ramp():
    x = torch.rand(4, 3, 8, 8)
    recon, mu, logvar = x + 0.1, torch.zeros(4, 2), torch.zeros(4, 2)
    loss_sum, logs = gaussian_vae_loss((recon, mu, logvar), x, 1.0, "sum")
    loss_mean, _ = gaussian_vae_loss((recon, mu, logvar), x, 1.0, "mean")
    assert loss_sum.item() == pytest.approx(0.01 * 3 * 8 * 8, rel=1e-4)  # summed over pixels, mean over batch
    assert loss_mean.item() == pytest.approx(0.01, rel=1e-4)
    assert logs["kl"].item() == 0.0  # N(0, I) posterior
    cfg = TrainConfig(beta=2.0, kl_warmup=0.5)
    assert kl_weight(cfg, 0, 100) < kl_weight(cfg, 24, 100) < kl_weight(cfg, 49, 100) == 2.0 == kl_weight(cfg, 99, 100)


def test_lr_schedule_warmup_then_cosine():
    f = lr_lambda(TrainConfig(warmup_steps=10, min_lr_ratio=0.1), total=100)
    values = [f(s) for s in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[9:], values[10:]))  # monotone decay after warm-up
    assert values[-1] == pytest.approx(0.1, abs=0.01)


def test_training_learns_and_model_round_trips(tmp_path):
    torch.manual_seed(0)
    train_images, test_images = synthetic_images(256, 32), synthetic_images(48, 32, seed=9)
    before = evaluate_reconstruction(TinyVAE32().eval(), test_images)
    model = train(TinyVAE32(), TrainConfig(steps=100, batch_size=32, lr=3e-3, beta=0.1, progress_bar=False), tmp_path,
                  train_images=train_images, test_images=test_images)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["metrics"]["mse"] < 0.8 * before["mse"]  # held-out error really went down
    assert report["steps"] == 100 and report["images_per_s"] > 0
    assert read_progress(tmp_path)["done"] is True and read_progress(tmp_path)["step"] == 100
    loaded = load_model(tmp_path)
    x = to_model_input(torch.as_tensor(test_images[:4]))
    assert torch.equal(loaded(x)[1], model(x)[1])
    assert read_meta(tmp_path)["architecture"] == "TinyVAE32"
    # the checkpoint is plain tensors: weights_only loading works, and a different run refuses it
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 100
    with pytest.raises(CheckpointError, match="different run"):
        train(TinyVAE32(), TrainConfig(steps=101, batch_size=32, progress_bar=False), tmp_path,
              train_images=train_images, test_images=test_images)


def test_puzzle_trains_with_data_initialised_codebook(tmp_path):
    images = synthetic_images(12, 224)
    model = train(VisionPuzzleVAE(8), TrainConfig(steps=3, batch_size=4, progress_bar=False), tmp_path,
                  train_images=images[:8], test_images=images[8:])
    metrics = json.loads((tmp_path / "report.json").read_text())["metrics"]
    assert metrics["codes_used"] >= 2 and 0 < metrics["mse"] < 1
    assert torch.isfinite(model.codebook.weight).all()


def test_kill_and_resume_matches_uninterrupted_run(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    ref = _cli([*TRAIN_ARGS, "--run-dir", str(straight)])
    victim = _cli([*TRAIN_ARGS, "--run-dir", str(killed)])
    deadline = time.monotonic() + 90
    while not (killed / "checkpoint.pt").exists():
        assert victim.poll() is None, victim.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert ref.wait(timeout=120) == 0, ref.stderr.read().decode()[-2000:]
    step_at_kill = load_checkpoint(killed / "checkpoint.pt")["step"]
    assert 0 < step_at_kill < 60, "the run finished before the kill: nothing was resumed"
    assert not (killed / "model.safetensors").exists()
    resumed = _cli([*TRAIN_ARGS, "--run-dir", str(killed)])
    assert resumed.wait(timeout=120) == 0, resumed.stderr.read().decode()[-2000:]
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(killed / "model.safetensors"))
    assert json.loads((killed / "report.json").read_text())["steps"] == 60
    assert a.keys() == b.keys()
    for key in a:  # same batches, same RNG stream, same optimizer state: bit-identical on one CPU
        assert torch.equal(a[key], b[key]), key


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
                    reason="torchrun not in the venv")
def test_ddp_two_cpu_processes(tmp_path):
    torchrun = str(Path(sys.executable).parent / "torchrun")
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "sage_ros.cli", "train", "--arch", "TinyVAE32",
           "--data", "synthetic", "--steps", "6", "--batch-size", "8", "--no-progress", "--run-dir", str(tmp_path)]
    result = subprocess.run(cmd, env=_env(), cwd=REPO, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["world_size"] == 2 and report["steps"] == 6 and report["batch_size"] == 8
    assert load_checkpoint(tmp_path / "checkpoint.pt")["signature"]["world"] == 2
    load_model(tmp_path)  # rank 0 wrote a complete model


def test_init_from_starts_a_new_run_from_trained_weights_and_refuses_others(tmp_path):
    from safetensors.torch import save_file

    from sage_ros.compression.checkpoints import init_weights_from, save_model

    torch.manual_seed(1)
    trained = TinyVAE32(8)
    save_model(trained, tmp_path / "run")
    bundle = tmp_path / "bundle"  # an fp32 bundle: bundle.json + model.safetensors, no model.json
    bundle.mkdir()
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(bundle / "model.safetensors"))
    (bundle / "bundle.json").write_text(json.dumps({"architecture": "TinyVAE32"}))
    for source in (tmp_path / "run", bundle):
        torch.manual_seed(2)
        fresh = TinyVAE32(8)
        assert not torch.equal(fresh.fc_mu.weight, trained.fc_mu.weight)
        init_weights_from(fresh, source)
        assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), trained.state_dict().values()))
    with pytest.raises(CheckpointError, match="latent_dim 16"):
        init_weights_from(TinyVAE32(16), bundle)
    with pytest.raises(CheckpointError, match="cannot start a VisionPuzzleVAE"):
        init_weights_from(VisionPuzzleVAE(8), bundle)
    # a training run with init_from starts there: after 0 optimiser steps' worth of change (lr tiny), the weights
    # are the trained ones, not a fresh initialisation
    images = synthetic_images(64, 32)
    torch.manual_seed(3)
    tuned = train(TinyVAE32(8), TrainConfig(steps=1, batch_size=8, lr=1e-9, progress_bar=False,
                                            init_from=str(tmp_path / "run")), tmp_path / "tuned",
                  train_images=images, test_images=images[:8])
    assert torch.allclose(tuned.fc_mu.weight, trained.fc_mu.weight, atol=1e-6)
    assert json.loads((tmp_path / "tuned" / "report.json").read_text())["config"]["init_from"] == str(tmp_path / "run")


def test_cli_refuses_init_from_weights_of_another_model(tmp_path):
    from sage_ros.compression.checkpoints import save_model

    save_model(TinyVAE32(8), tmp_path / "run")
    proc = _cli(["train", "--arch", "TinyVAE", "--latent-dim", "8", "--init-from", str(tmp_path / "run"),
                 "--data", "synthetic", "--steps", "1", "--run-dir", str(tmp_path / "out")])
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "--init-from" in err.decode() and "cannot start a TinyVAE run" in err.decode()
    assert not (tmp_path / "out" / "checkpoint.pt").exists()
