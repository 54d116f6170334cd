"""onnxruntime backend: TensorRT EP / CUDA EP when asked for (device cuda:N) and present, else CPU."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import Bundle
from .base import Backend, BackendError, BackendUnavailable, log
from .engine_cache import default_cache_dir


def choose_providers(device_kind: str, device_index: int, available: list[str], precision: str,
                     cache_dir: Path | None, use_tensorrt_ep: bool = True) -> tuple[list, str | None]:
    """(providers for InferenceSession, fallback note or None). Pure function of its inputs so it is testable
    without a GPU: on 'cuda' prefer TensorRT EP, then CUDA EP; always end with CPU."""
    providers: list = []
    note = None
    if device_kind == "cuda":
        if use_tensorrt_ep and "TensorrtExecutionProvider" in available:
            options = {"device_id": device_index,
                       "trt_fp16_enable": precision in ("fp16", "int8", "int4"),
                       "trt_int8_enable": precision == "int8",
                       "trt_engine_cache_enable": cache_dir is not None,
                       "trt_timing_cache_enable": cache_dir is not None}
            if cache_dir is not None:
                options["trt_engine_cache_path"] = str(cache_dir)
                options["trt_timing_cache_path"] = str(cache_dir)
            providers.append(("TensorrtExecutionProvider", options))
        if "CUDAExecutionProvider" in available:
            providers.append(("CUDAExecutionProvider", {"device_id": device_index}))
        if not providers:
            note = (f"device cuda:{device_index} asked for, but this onnxruntime has only {available}; "
                    "running on CPU (install onnxruntime-gpu, or JetPack's onnxruntime wheel on a Jetson)")
    providers.append("CPUExecutionProvider")
    return providers, note


class OnnxRuntimeBackend(Backend):
    """Options: intra_op_threads (0 = onnxruntime's default), inter_op_threads, allow_spinning (False: idle worker
    threads sleep instead of spinning, which matters on a robot sharing its CPU), use_tensorrt_ep, cache_dir
    (TensorRT EP engine cache; default beside the bundle), strict_device (raise instead of falling back to CPU)."""

    name = "onnxruntime"

    def __init__(self, bundle: Bundle, device: str = "cpu", *, intra_op_threads: int = 0, inter_op_threads: int = 0,
                 allow_spinning: bool = False, use_tensorrt_ep: bool = True, cache_dir: str | Path | None = None,
                 strict_device: bool = False):
        super().__init__(bundle, device)
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise BackendUnavailable(f"onnxruntime backend needs the onnxruntime package ({err})") from None
        self._ort = ort
        if intra_op_threads < 0 or inter_op_threads < 0:
            raise ValueError("thread counts must be >= 0")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = int(intra_op_threads)
        options.inter_op_num_threads = int(inter_op_threads)
        options.log_severity_level = 3  # errors only: fp16 graphs warn about unfoldable constants otherwise
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
        self._session_options = options
        trt_cache = None
        if self.device_kind == "cuda" and use_tensorrt_ep:
            trt_cache = Path(cache_dir) if cache_dir else default_cache_dir(bundle.path)
        self._providers, self.fallback_note = choose_providers(
            self.device_kind, self.device_index, ort.get_available_providers(), bundle.precision, trt_cache,
            use_tensorrt_ep)
        if self.fallback_note:
            if strict_device:
                raise BackendUnavailable(self.fallback_note)
            log.warning(self.fallback_note)
        self._encoder = self._session(bundle.encoder_path)
        self._decoder = None  # created on first decode: most nodes never decode
        self._encoder_outputs = [o.name for o in self._encoder.get_outputs()]

    def _session(self, path: Path):
        try:  # from the bytes verified at bundle load, never the path again (a replaced file is not used)
            return self._ort.InferenceSession(self.bundle.file_bytes(path.name), sess_options=self._session_options,
                                              providers=self._providers)
        except Exception as err:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
            raise BackendError(f"onnxruntime could not load {path}: {err}") from None

    @property
    def providers(self) -> list[str]:
        """The providers the session actually uses, in priority order."""
        return self._encoder.get_providers()

    def _run_encoder(self, images: np.ndarray) -> dict[str, np.ndarray]:
        values = self._encoder.run(self._encoder_outputs, {"image": images})
        return dict(zip(self._encoder_outputs, values))

    def _run_decoder(self, latent: np.ndarray) -> np.ndarray:
        if self._decoder is None:
            self._decoder = self._session(self.bundle.decoder_path)
        return self._decoder.run(["image"], {"z": latent})[0]

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["providers"] = self.providers
        if self.device_kind == "cuda" and not any(p in self.providers for p in ("CUDAExecutionProvider",
                                                                                 "TensorrtExecutionProvider")):
            # asked for a GPU, running on the CPU (no such device, or no GPU provider): say what runs
            info["device"], info["requested_device"] = "cpu", self.device
        info["intra_op_threads"] = self._session_options.intra_op_num_threads
        if self.fallback_note:
            info["fallback"] = self.fallback_note
        return info

    def close(self) -> None:
        self._encoder = None
        self._decoder = None
        super().close()
