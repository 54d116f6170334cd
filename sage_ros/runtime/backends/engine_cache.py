"""TensorRT engine cache: where engines live and when they must be rebuilt. No tensorrt import here, so this
logic is tested on machines without TensorRT.

Key = sha256 of the ONNX file + TensorRT version + GPU name + precision (+ the max batch of the optimization
profile, which also changes the engine). An engine is stored as `<graph>-<key[:16]>.engine` with a `.json`
sidecar holding the key's parts; a different key means a different file, so a changed ONNX, TensorRT upgrade or
another GPU builds a new engine, and a corrupt or unreadable engine is rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Callable

from ...atomic import atomic_write_bytes, atomic_write_json
from .base import BackendError

CACHE_DIR_NAME = ".engine_cache"


def engine_cache_key(onnx_sha256: str, trt_version: str, gpu_name: str, precision: str, max_batch: int) -> str:
    parts = {"onnx_sha256": onnx_sha256, "tensorrt": trt_version, "gpu": gpu_name, "precision": precision,
             "max_batch": int(max_batch)}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _writable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(directory, os.W_OK)


def default_cache_dir(bundle_dir: Path) -> Path:
    """`<bundle>/.engine_cache` beside the bundle; when that is read-only (an installed share/ folder), a per-user
    cache `$XDG_CACHE_HOME/sage_ros/engines/<bundle name>-<path hash>` instead."""
    beside = Path(bundle_dir) / CACHE_DIR_NAME
    if _writable(beside):
        return beside
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sage_ros" / "engines"
    tag = hashlib.sha256(str(Path(bundle_dir).resolve()).encode()).hexdigest()[:8]
    fallback = base / f"{Path(bundle_dir).name}-{tag}"
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:64]


class EngineCache:
    """get_or_build(graph, key_parts, build, deserialize): the cached engine for these key parts, else a new one."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.last_event = ""  # "hit" | "built" | "rebuilt (reason)" for logs and tests

    def engine_path(self, graph: str, key: str) -> Path:
        return self.directory / f"{graph}-{key[:16]}.engine"

    def timing_cache_path(self, trt_version: str, gpu_name: str) -> Path:
        """One timing cache per TensorRT version and GPU, shared by all graphs (it holds per-layer tactic timings)."""
        return self.directory / f"timing-{_safe(trt_version)}-{_safe(gpu_name)}.cache"

    def get_or_build(self, graph: str, key_parts: dict, build: Callable[[], bytes],
                     deserialize: Callable[[bytes], object]) -> object:
        """Deserialize the cached engine if its key matches; else (or if that fails) build, store and deserialize."""
        key = engine_cache_key(**key_parts)
        path = self.engine_path(graph, key)
        sidecar = path.with_suffix(".json")
        reason = "no cached engine"
        if path.is_file():
            stored = _read_json(sidecar)
            if stored.get("key") != key:
                reason = "cache sidecar missing or key mismatch"
            else:
                engine = deserialize(path.read_bytes())
                if engine is not None:
                    self.last_event = "hit"
                    return engine
                reason = "cached engine could not be deserialized"
        blob = build()
        if not blob:
            raise BackendError(f"engine build for {graph} returned nothing")
        atomic_write_bytes(path, bytes(blob))
        atomic_write_json(sidecar, {"key": key, **key_parts})
        engine = deserialize(bytes(blob))
        if engine is None:
            raise BackendError(f"freshly built engine for {graph} could not be deserialized")
        self.last_event = "built" if reason == "no cached engine" else f"rebuilt ({reason})"
        return engine


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
