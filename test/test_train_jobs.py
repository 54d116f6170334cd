"""jobs.py: spec -> sage-ros command line, a real job run to completion, cancellation with SIGTERM."""
import json
import os
import sys
import time
from pathlib import Path

import pytest

from sage_ros.compression.checkpoints import load_model
from sage_ros.compression.jobs import Job, JobSpecError, job_argv, load_spec
from sage_ros.compression.progress import read_progress

REPO = Path(__file__).resolve().parents[1]


def test_spec_to_argv(tmp_path):
    spec = {"job": "ablate", "run_dir": "runs/a", "latents": [4, 8], "args": {"no_progress": True, "lr": 0.01,
                                                                           "topic": None, "train_only": False}}
    assert job_argv(spec, python="py") == ["py", "-m", "sage_ros.cli", "ablate", "--run-dir", "runs/a",
                                           "--latents", "4", "8", "--no-progress", "--lr", "0.01"]
    (tmp_path / "job.yaml").write_text("job: train\nargs:\n  arch: TinyVAE32\n")
    assert load_spec(tmp_path / "job.yaml") == {"job": "train", "run_dir": "runs/train", "args": {"arch": "TinyVAE32"}}
    with pytest.raises(JobSpecError, match="job must be one of"):
        load_spec({"job": "rm"})
    with pytest.raises(JobSpecError, match="args must be a mapping"):
        load_spec({"job": "train", "args": [1]})


def _env():
    return dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")


def test_job_runs_and_can_be_cancelled(tmp_path):
    base = {"job": "train", "arch": "TinyVAE32", "data": "synthetic", "batch_size": 8, "no_progress": True}
    done = Job.start({**base, "run_dir": "short", "steps": 3}, cwd=tmp_path, env=_env())
    long = Job.start({**base, "run_dir": "long", "steps": 100000, "checkpoint_every": 5}, cwd=tmp_path, env=_env())
    assert done.wait(timeout=120) == 0, (tmp_path / "short" / "job.log").read_text()[-2000:]
    load_model(tmp_path / "short")
    deadline = time.monotonic() + 90
    while (read_progress(long.run_dir) or {}).get("phase") != "training":
        assert long.poll() is None and time.monotonic() < deadline, (long.run_dir / "job.log").read_text()[-2000:]
        time.sleep(0.1)
    assert long.cancel(timeout=20) is not None
    progress = read_progress(long.run_dir)
    assert progress["phase"] == "cancelled" and progress["done"] and "SIGTERM" in progress["error"]
    assert (long.run_dir / "checkpoint.pt").exists() and not (long.run_dir / "model.safetensors").exists()
