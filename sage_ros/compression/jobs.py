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

import yaml

JOBS = ("train", "distill", "quantize", "ablate", "evaluate", "export")
MULTI_VALUE_OPTIONS = {"latents"}  # argparse nargs="+": one option, several values

# The options a job file may set, per job kind, and what each value is: "path" (confined to the workspace by
# the compression_node), "value" (a plain value), "flag" (true/false), "paths" (repeatable path), "values"
# (nargs="+"). Written out rather than read from the verbs' argparse parsers because those import torch, which
# the compression_node must not; test/test_jobs_allow_list.py checks every entry against the real parsers. An option
# that is not here (or a key spelled so that it is not, e.g. 'run-dir=/tmp/x') is refused.
_V, _P, _F = "value", "path", "flag"
_DATA = {"data": _V, "data-path": _P, "topic": _V, "limit": _V}
_LOOP = {**{name: _V for name in (
    "steps", "epochs", "batch-size", "lr", "weight-decay", "warmup-steps", "min-lr-ratio", "grad-clip", "beta",
    "kl-warmup", "recon", "vq-beta", "vq-ema", "vq-restart", "vq-init", "vq-soft", "seed", "device",
    "checkpoint-every",
    "eval-every", "eval-images", "ema", "threads")}, "no-augment": _F, "no-progress": _F}
_CALIBRATION = {"calibration": _V, "calibration-path": _P, "calibration-topic": _V, "calibration-split": _V,
                "calibration-count": _V}
_HELD_OUT = {**_DATA, "split": _V, "batch-size": _V, **_CALIBRATION}
ALLOWED_OPTIONS: dict[str, dict[str, str]] = {
    "train": {"model": _V, "latent-dim": _V, **_DATA, **_LOOP},
    "distill": {"w-rec": _V, "w-kl": _V, "w-lat": _V, "w-out": _V, "w-perc": _V, "perceptual": _V,
                "vgg16-weights": _P, "teacher": _P, "teacher-steps": _V, "student-latent": _V, "no-baseline": _F,
                **_DATA, **_LOOP},
    "quantize": {"model": _P, "scheme": _V, "group-size": _V, "rounding": _V, "conv-scheme": _V, "no-eval": _F,
                 "out": _P, **_HELD_OUT},
    "ablate": {"latents": "values", "int4-group-size": _V, "psnr-tolerance-db": _V, "min-mu-cosine": _V,
               "train-only": _F, **_DATA, **_LOOP},
    "evaluate": {"model": _P, "out": _P, "group-size": _V, "int8-rounding": _V, "bundle": "paths",
                 "quantized": "paths", "gptq": _F, "no-pca": _F, "keep-pca": _F, "pca-train-limit": _V, "grid": _V,
                 "no-palette": _F, "palette-train-limit": _V, "windows": _V, "windows-seed": _V, **_HELD_OUT},
    "export": {"model": _P, "precision": _V, "out": _P, "name": _V, "opset": _V, "metrics": _P, "no-verify": _F,
               "calibrate-method": _V, "percentile": _V, "int8-activations": _V, "int8-target": _V, "group-size": _V,
               "rounding": _V, "conv-scheme": _V, "evaluate": _F, **_HELD_OUT},
}
MAX_JOB_FILE_BYTES = 64 * 1024  # a job file is a few lines; anything near this is not one


def option_name(key) -> str:
    """A job-file key -> the option it names ('data_path', '--data-path' -> 'data-path'); JobSpecError for
    anything that is not a plain option name (so '--run-dir=/x', 'run-dir /x' or 'run-dir=/x' never pass)."""
    name = str(key).lstrip("-").replace("_", "-")
    if not name or not all(c.isascii() and (c.isalnum() or c == "-") for c in name):
        raise JobSpecError(f"option {key!r} is not an option name (letters, digits, '-' or '_' only)")
    return name


def option_kinds(job: str, args: dict) -> dict[str, str]:
    """{option name: kind} for a spec's args; JobSpecError naming every option not allowed for `job`."""
    allowed = ALLOWED_OPTIONS[job]
    names = {key: option_name(key) for key in args}
    refused = sorted(key for key, name in names.items() if name not in allowed and name != "run-dir")
    if refused:
        raise JobSpecError(f"options {refused} are not allowed for a {job} job; allowed: "
                           f"{', '.join(sorted(allowed))} (run_dir is its own key)")
    return {name: ("path" if name == "run-dir" else allowed[name]) for name in names.values()}


def _check_value(option: str, value) -> str:
    """A command-line value that argparse cannot take for an option: nothing starting with '-' but numbers."""
    text = str(value)
    if text.startswith("-"):
        try:
            float(text)
        except ValueError:
            raise JobSpecError(f"value {text!r} of --{option} starts with '-' (it would be read as an option)") \
                from None
    if "\x00" in text:
        raise JobSpecError(f"value of --{option} holds a NUL byte")
    return text


class JobSpecError(ValueError):
    """A job spec that cannot be run: not a mapping, unknown job, bad args."""


def load_spec(spec_or_path) -> dict:
    """Normalise a spec (dict or YAML path) to {"job", "run_dir", "args"}."""
    if isinstance(spec_or_path, (str, os.PathLike)):
        spec_or_path = read_job_file(Path(spec_or_path))
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
    args = {**spec, **args}
    option_kinds(job, args)
    return {"job": job, "run_dir": run_dir, "args": args}


class _NoAliasLoader(yaml.SafeLoader):
    """safe_load without anchors/aliases: a job file needs none, and aliases are how a few hundred bytes of YAML
    become billions of nodes once something walks them (the 'billion laughs' bomb)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise JobSpecError(f"YAML aliases (*{event.anchor}) are not allowed in job files (line "
                               f"{event.start_mark.line + 1})")
        return super().compose_node(parent, index)


def read_job_file(path: Path) -> dict:
    """A job file -> its mapping; JobSpecError (never another exception) for unreadable, oversized, non-UTF-8,
    aliased or malformed YAML."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_JOB_FILE_BYTES + 1)
    except OSError as exc:
        raise JobSpecError(f"cannot read job file {path}: {exc}") from None
    if len(raw) > MAX_JOB_FILE_BYTES:
        raise JobSpecError(f"job file {path} is larger than {MAX_JOB_FILE_BYTES} bytes; refused")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JobSpecError(f"job file {path} is not UTF-8 text (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})") \
            from None
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise JobSpecError(f"cannot parse job file {path}: {exc}") from None
    except RecursionError:
        raise JobSpecError(f"job file {path} nests too deeply") from None


def job_argv(spec: dict, python: str = sys.executable) -> list[str]:
    """The command line of a (normalised or raw) spec."""
    spec = load_spec(spec)
    argv = [python, "-m", "sage_ros.cli", spec["job"], "--run-dir", _check_value("run-dir", spec["run_dir"])]
    kinds = option_kinds(spec["job"], spec["args"])
    for key, value in spec["args"].items():
        name = option_name(key)
        option, kind = "--" + name, kinds[name]
        if kind == "flag":
            if value not in (True, False, None):
                raise JobSpecError(f"--{name} is a flag: true or false, got {value!r}")
            if value is True:
                argv.append(option)
        elif value is None or value is False:
            continue
        elif isinstance(value, dict):
            raise JobSpecError(f"option {key!r}: nested mappings are not command-line values")
        elif value is True:
            raise JobSpecError(f"--{name} takes a value, got true")
        elif isinstance(value, (list, tuple)) and (name in MULTI_VALUE_OPTIONS or kind == "values"):
            argv += [option, *(_check_value(name, item) for item in value)]
        elif isinstance(value, (list, tuple)):
            if kind not in ("paths",):
                raise JobSpecError(f"--{name} takes one value, got a list")
            for item in value:
                argv += [option, _check_value(name, item)]
        else:
            argv += [option, _check_value(name, value)]
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
