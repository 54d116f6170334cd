"""Inference backends behind one interface (base.Backend): "onnxruntime", "tensorrt", "torch", and "auto".

    backend = make_backend(load_bundle("models/tinyvae64"), "auto", device="cuda:0")
    backend.warmup()
    out = backend.encode(preprocessor(frames))   # {"mu": N x L, "logvar": N x L} or {"codes": uint8 N x 30 x 30}

No torch or tensorrt import happens here; each backend imports its library when it is made.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from ..bundle import Bundle, load_bundle
from ..settings import BACKENDS
from .base import Backend, BackendError, BackendUnavailable, log, parse_device


def tensorrt_importable() -> bool:
    return importlib.util.find_spec("tensorrt") is not None


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda:0' when onnxruntime or TensorRT can reach a GPU, else 'cpu'; others are validated."""
    if device != "auto":
        parse_device(device)
        return device
    from .tensorrt_backend import gpu_available
    if gpu_available():
        return "cuda:0"
    try:
        import onnxruntime as ort
        providers = ort.get_available_providers()
    except ImportError:
        providers = []
    return "cuda:0" if {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(providers) else "cpu"


def choose_backend(name: str, device: str, *, tensorrt_ok: bool | None = None) -> str:
    """The concrete backend "auto" stands for: tensorrt when the device is a GPU and TensorRT + a GPU are
    usable, else onnxruntime (which itself uses the TensorRT / CUDA execution providers when present)."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name != "auto":
        return name
    kind, _ = parse_device(device)
    if kind != "cuda":
        return "onnxruntime"
    if tensorrt_ok is None:
        from .tensorrt_backend import gpu_available
        tensorrt_ok = tensorrt_importable() and gpu_available()
    return "tensorrt" if tensorrt_ok else "onnxruntime"


def make_backend(bundle: Bundle | str | Path, name: str = "auto", device: str = "cpu", **options) -> Backend:
    """A ready backend for `bundle` (a Bundle or a bundle directory, loaded and verified here).

    name: auto | onnxruntime | tensorrt | torch. device: cpu | cuda | cuda:N | auto. options go to the backend
    (onnxruntime: intra_op_threads, inter_op_threads, allow_spinning, use_tensorrt_ep, cache_dir, strict_device;
    tensorrt: max_batch, fp16, workspace_mb, cache_dir; torch: threads). With "auto", a TensorRT failure at
    engine build falls back to onnxruntime with a warning; a named backend never falls back.
    """
    if not isinstance(bundle, Bundle):
        bundle = load_bundle(bundle)
    device = resolve_device(device)
    chosen = choose_backend(name, device)
    if chosen == "tensorrt":
        from .tensorrt_backend import TensorRTBackend
        if name == "auto":
            try:
                return TensorRTBackend(bundle, device, **_only(options, "max_batch", "fp16", "workspace_mb",
                                                               "cache_dir"))
            except Exception as err:  # auto promises a working backend: any TensorRT failure falls back
                log.warning("auto: tensorrt failed (%s: %s); using onnxruntime", type(err).__name__, err)
                chosen = "onnxruntime"
        else:
            return TensorRTBackend(bundle, device, **options)
    if chosen == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeBackend
        if name == "auto":
            options = _only(options, "intra_op_threads", "inter_op_threads", "allow_spinning", "use_tensorrt_ep",
                            "cache_dir", "strict_device")
        return OnnxRuntimeBackend(bundle, device, **options)
    from .torch_backend import TorchBackend
    return TorchBackend(bundle, device, **options)


def _only(options: dict, *names: str) -> dict:
    """With "auto" the caller cannot know which backend runs, so options for the other one are dropped."""
    return {k: v for k, v in options.items() if k in names}


__all__ = ["Backend", "BackendError", "BackendUnavailable", "BACKENDS", "make_backend", "choose_backend",
           "resolve_device", "tensorrt_importable", "parse_device"]
