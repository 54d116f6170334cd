"""Trained models on disk: <run_dir>/model.safetensors (weights) + <run_dir>/model.json (how to rebuild them).

model.json: {"architecture", "latent_dim", "image_size", "input_range", "format": "sage_ros.model/1", ...} plus
whatever the writer adds (training config, step, held-out metrics). No pickle anywhere: weights are safetensors,
and the resumable training checkpoint (checkpoint.pt) only holds tensors and plain Python values so that it
loads with torch.load(weights_only=True).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from sage_ros.atomic import atomic_path, atomic_write_json
from sage_ros.models import ARCHITECTURES, build_model

MODEL_FILE = "model.safetensors"
META_FILE = "model.json"
CHECKPOINT_FILE = "checkpoint.pt"
FORMAT = "sage_ros.model/1"


class CheckpointError(ValueError):
    """Missing, unreadable or inconsistent model / checkpoint files."""


def architecture_of(model: torch.nn.Module) -> str:
    name = type(model).__name__
    if name not in ARCHITECTURES:
        raise CheckpointError(f"{name} is not one of the sage_ros architectures {sorted(ARCHITECTURES)}")
    return name


def model_meta(model: torch.nn.Module) -> dict:
    return {"format": FORMAT, "architecture": architecture_of(model), "latent_dim": int(model.latent_dim),
            "image_size": int(model.image_size), "input_range": list(model.input_range)}


def save_model(model: torch.nn.Module, run_dir: str | Path, extra: dict | None = None,
               stem: str = "model") -> Path:
    """Write <run_dir>/<stem>.safetensors and <stem>.json atomically; returns the weights path."""
    run_dir = Path(run_dir)
    weights = run_dir / f"{stem}.safetensors"
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp))
    atomic_write_json(run_dir / f"{stem}.json", {**model_meta(model), **(extra or {})})
    return weights


def load_model(path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild a trained model (eval mode) from a run directory or a .safetensors file with its .json beside it."""
    weights, meta = _resolve(Path(path))
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{weights}: model.json format {meta.get('format')!r}, expected {FORMAT!r}")
    model = build_model(meta["architecture"], int(meta["latent_dim"]))
    try:
        missing, unexpected = model.load_state_dict(load_file(str(weights)), strict=False)
    except RuntimeError as exc:  # shape mismatch
        raise CheckpointError(f"{weights}: weights do not fit {meta['architecture']}: {exc}") from None
    if missing or unexpected:
        raise CheckpointError(f"{weights}: missing {missing}, unexpected {unexpected}")
    return model.to(device).eval()


def init_weights_from(model: torch.nn.Module, path: str | Path) -> Path:
    """Load the trained weights at `path` (a run directory with model.json, or an fp32 bundle directory with
    bundle.json and model.safetensors) into `model`, which must be the same architecture and latent size: the start
    of a fine-tuning run (`sage-ros train --init-from`). Returns the weights file; CheckpointError otherwise."""
    path = Path(path)
    bundle_json = path / "bundle.json"
    if path.is_dir() and bundle_json.is_file() and not (path / META_FILE).is_file():
        weights = path / MODEL_FILE
        try:
            architecture = json.loads(bundle_json.read_text())["architecture"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{bundle_json}: no architecture ({exc})") from None
        if not weights.is_file():
            raise CheckpointError(f"{path}: no {MODEL_FILE} (only fp32 bundles carry trainable weights)")
    else:
        weights, meta = _resolve(path)
        architecture = meta.get("architecture")
    if architecture != architecture_of(model):
        raise CheckpointError(f"{weights}: {architecture} weights cannot start a {architecture_of(model)} run")
    try:
        model.load_state_dict(load_file(str(weights)), strict=True)
    except RuntimeError as exc:  # shape mismatch (another latent size) or missing / unexpected tensors
        lines = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()] or [str(exc)]
        raise CheckpointError(f"{weights}: weights do not fit this {architecture_of(model)} "
                              f"(latent_dim {model.latent_dim}): {lines[0]}") from None
    return weights


def read_meta(path: str | Path) -> dict:
    return _resolve(Path(path))[1]


def _resolve(path: Path) -> tuple[Path, dict]:
    if path.is_dir():
        weights, meta_path = path / MODEL_FILE, path / META_FILE
    else:
        weights = path
        meta_path = path.with_suffix(".json")
        if not meta_path.exists():
            meta_path = path.parent / META_FILE
    if not weights.is_file():
        raise CheckpointError(f"no model weights at {weights}")
    if not meta_path.is_file():
        raise CheckpointError(f"no {META_FILE} beside {weights}")
    try:
        return weights, json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{meta_path}: {exc}") from None


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Atomic torch.save of a weights_only-loadable dict (tensors, numbers, strings, lists, dicts)."""
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict | None:
    path = Path(path)
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # a truncated file cannot happen (atomic writes), a foreign one can
        raise CheckpointError(f"cannot load checkpoint {path}: {exc}") from None


def save_training_checkpoint(path, module, optimizer, scheduler, step, signature, elapsed_s, ema=None, points=()):
    """The resumable state of a training run (model, optimizer, scheduler, step, RNG states, EMA, curve)."""
    state = {"model": module.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "step": step, "signature": signature, "elapsed_s": float(elapsed_s),
             "rng_cpu": torch.get_rng_state(), "curve": list(points)}
    if ema is not None:
        state["ema"] = ema.state_dict()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["rng_cuda"] = torch.cuda.get_rng_state()
    save_checkpoint(path, state)


def resume_training(path, module, optimizer, scheduler, signature, device, seed, rank, ema=None) -> tuple[int, float, list]:
    """Load save_training_checkpoint's state into a fresh run -> (step, elapsed seconds, curve points); (0, 0.0, [])
    when there is no checkpoint. A checkpoint of a different run (signature) is refused."""
    ckpt = load_checkpoint(path, device="cpu")
    if ckpt is None:
        return 0, 0.0, []
    if ckpt.get("signature") != signature:
        raise CheckpointError(f"{path} belongs to a different run ({ckpt.get('signature')} vs {signature}); "
                              "use a fresh run directory or delete the checkpoint")
    module.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    if ema is not None:
        if "ema" not in ckpt:
            raise CheckpointError(f"{path} was written without --ema; resume with the same options")
        ema.load_state_dict(ckpt["ema"])
    step = int(ckpt["step"])
    if rank == 0:  # rank 0 continues its exact random stream; other ranks reseed deterministically
        torch.set_rng_state(ckpt["rng_cpu"])
        if "rng_cuda" in ckpt and device.type == "cuda":
            torch.cuda.set_rng_state(ckpt["rng_cuda"])
    else:
        torch.manual_seed(seed + rank + 7919 * step)
    return step, float(ckpt.get("elapsed_s", 0.0)), list(ckpt.get("curve", []))
