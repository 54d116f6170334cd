"""Run one offline job (train / distill / quantize / ablate / evaluate / export) as a `sage-ros` subprocess.

    job = Job.start({"job": "train", "run_dir": "runs/t16", "args": {"model": "TinyVAE", "latent_dim": 16}})
    job.poll(); read_progress(job.run_dir); job.cancel(); job.wait()

Spec (a dict, or a YAML file holding one): `job` (a sage-ros verb), `run_dir` (default runs/<job>), and the
verb's options either under `args` or as further top-level keys: `name: value` becomes `--name value`
(underscores -> dashes), `true` a bare flag, `false`/null nothing, a list repeats the option... except for
nargs options such as ablate's `latents`, where a list is passed as one option with several values.
A job runs in its own session (process group), so cancel() reaches every process it started (torchrun
workers included): SIGTERM, then SIGKILL after `timeout` seconds. Resumable verbs (train, distill, ablate)
pick up from their checkpoints when the same spec is started again.
No torch and no rclpy here: the compression_node imports this module.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

JOBS = ("train", "distill", "quantize", "ablate", "evaluate", "export")
MULTI_VALUE_OPTIONS = {"latents"}  # argparse nargs="+": one option, several values


class JobSpecError(ValueError):
    """A job spec that cannot be run: not a mapping, unknown job, bad args."""


def load_spec(spec_or_path) -> dict:
    """Normalise a spec (dict or YAML path) to {"job", "run_dir", "args"}."""
    if isinstance(spec_or_path, (str, os.PathLike)):
        import yaml

        try:
            spec_or_path = yaml.safe_load(Path(spec_or_path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise JobSpecError(f"cannot read job file {spec_or_path}: {exc}") from exc
    if not isinstance(spec_or_path, dict):
        raise JobSpecError("a job spec must be a mapping")
    spec = dict(spec_or_path)
    job = spec.pop("job", None)
    if job not in JOBS:
        raise JobSpecError(f"job must be one of {JOBS}, got {job!r}")
    run_dir = str(spec.pop("run_dir", f"runs/{job}"))
    args = spec.pop("args", {}) or {}
    if not isinstance(args, dict):
        raise JobSpecError("args must be a mapping of sage-ros options (name: value)")
    return {"job": job, "run_dir": run_dir, "args": {**spec, **args}}


def job_argv(spec: dict, python: str = sys.executable) -> list[str]:
    """The command line of a (normalised or raw) spec."""
    spec = load_spec(spec)
    argv = [python, "-m", "sage_ros.cli", spec["job"], "--run-dir", spec["run_dir"]]
    for name, value in spec["args"].items():
        option = "--" + str(name).replace("_", "-")
        if value is True:
            argv.append(option)
        elif value is False or value is None:
            continue
        elif isinstance(value, (list, tuple)) and name in MULTI_VALUE_OPTIONS:
            argv += [option, *map(str, value)]
        elif isinstance(value, (list, tuple)):
            for item in value:
                argv += [option, str(item)]
        elif isinstance(value, dict):
            raise JobSpecError(f"option {name!r}: nested mappings are not command-line values")
        else:
            argv += [option, str(value)]
    return argv


class Job:
    """One running job subprocess; stdout and stderr go to <run_dir>/job.log."""

    def __init__(self, spec: dict, process: subprocess.Popen, run_dir: Path):
        self.spec, self.process, self.run_dir = spec, process, run_dir
        self.cancelled = False

    @classmethod
    def start(cls, spec_or_path, cwd: str | os.PathLike | None = None, env: dict | None = None) -> "Job":
        spec = load_spec(spec_or_path)
        run_dir = Path(cwd or ".") / spec["run_dir"]
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "job.log", "ab") as log:
            process = subprocess.Popen(job_argv(spec), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        return cls(spec, process, run_dir)

    def poll(self) -> int | None:
        return self.process.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self.process.wait(timeout=timeout)

    def cancel(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the job's process group, SIGKILL it if it has not exited after `timeout` s."""
        self.cancelled = True
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.process.poll() is not None:
                break
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                continue
        return self.process.poll()


def run_job(spec_or_path, cwd: str | os.PathLike | None = None) -> int:
    """Run a job to completion; returns its exit status."""
    return Job.start(spec_or_path, cwd).wait()
