"""The one backend interface. Subclasses implement _run_encoder / _run_decoder on float32 NCHW / latent arrays;
the base class does input preparation and output checks so every backend returns the same things.
"""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from ..bundle import Bundle
from ..preprocess import Preprocessor

log = logging.getLogger("sage_ros.runtime.backends")


class BackendError(RuntimeError):
    """A backend failed to start or to run (bad device, bad output, engine build failure, ...)."""


class BackendUnavailable(BackendError):
    """The backend cannot run here (package or device missing); the message says what is needed."""


def parse_device(device: str) -> tuple[str, int]:
    """'cpu' -> ('cpu', 0); 'cuda' / 'cuda:1' -> ('cuda', 1). Anything else raises ValueError."""
    if device == "cpu":
        return "cpu", 0
    if device == "cuda":
        return "cuda", 0
    if isinstance(device, str) and device.startswith("cuda:") and device[5:].isdigit():
        return "cuda", int(device[5:])
    raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")


class Backend(ABC):
    """encode(batch) -> {"mu","logvar"} (float32 N x L) or {"codes"} (uint8 N x 30 x 30); decode(z) -> float32
    N x 3 x H x W in the bundle's input range.

    `batch` is float32 N x 3 x H x W already in the bundle's input range (what Preprocessor returns), or uint8
    RGB frames (H x W x 3 or N x H x W x 3, any size), which are resized whole with INTER_AREA first.
    """

    name = "base"

    def __init__(self, bundle: Bundle, device: str = "cpu"):
        self.bundle = bundle
        self.device = device
        self.device_kind, self.device_index = parse_device(device)
        self._preprocessor = Preprocessor.from_bundle(bundle, "resize")
        self._closed = False

    # --- public -----------------------------------------------------------------------------------------------

    def encode(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self._check_open()
        images = self.prepare_input(batch)
        outputs = self._run_encoder(images)
        return self._check_encoder_outputs(outputs, images.shape[0])

    def decode(self, z: np.ndarray) -> np.ndarray:
        self._check_open()
        latent = self.prepare_latent(z)
        image = np.asarray(self._run_decoder(latent), dtype=np.float32)
        height, width = self.bundle.input_size
        if image.shape != (latent.shape[0], 3, height, width):
            raise BackendError(f"{self.name}: decoder returned shape {image.shape}, expected "
                               f"{(latent.shape[0], 3, height, width)}")
        return image

    def warmup(self, iterations: int = 2, batch_size: int = 1) -> None:
        """Run the encoder (and nothing else) on zeros: first calls allocate, build or tune and are slow."""
        height, width = self.bundle.input_size
        lo, _ = self.bundle.input_range
        dummy = np.full((batch_size, 3, height, width), lo, np.float32)
        for _ in range(iterations):
            self.encode(dummy)

    def close(self) -> None:
        self._closed = True

    def describe(self) -> dict[str, Any]:
        """For logs and /diagnostics: backend, device, model, precision (subclasses add providers, engine, ...)."""
        return {"backend": self.name, "device": self.device, "model": self.bundle.name,
                "architecture": self.bundle.architecture, "precision": self.bundle.precision}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- for subclasses ---------------------------------------------------------------------------------------

    @abstractmethod
    def _run_encoder(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """float32 N x 3 x H x W -> raw graph outputs by name (codes may be int64)."""

    @abstractmethod
    def _run_decoder(self, latent: np.ndarray) -> np.ndarray:
        """float32 N x L (or int64 N x 30 x 30 codes) -> float32 N x 3 x H x W."""

    # --- shared checks ----------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError(f"{self.name} backend is closed")

    def prepare_input(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch)
        height, width = self.bundle.input_size
        if batch.dtype == np.uint8:
            frames = [batch] if batch.ndim == 3 else list(batch)
            return self._preprocessor(frames)
        if batch.ndim == 3:
            batch = batch[None]
        if batch.ndim != 4 or batch.shape[1:] != (3, height, width):
            raise BackendError(f"{self.name}: encoder input must be N x 3 x {height} x {width} float32 or uint8 "
                               f"RGB frames, got shape {batch.shape} dtype {batch.dtype}")
        if batch.shape[0] == 0:
            raise BackendError(f"{self.name}: empty batch")
        return np.ascontiguousarray(batch, dtype=np.float32)

    def prepare_latent(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z)
        shape = self.bundle.latent_shape
        if z.ndim == len(shape):
            z = z[None]
        if z.shape[1:] != shape or z.shape[0] == 0:
            raise BackendError(f"{self.name}: decoder input must be N x {' x '.join(map(str, shape))}, got {z.shape}")
        if self.bundle.is_vq:
            if not np.issubdtype(z.dtype, np.integer):
                raise BackendError(f"{self.name}: codes must be integers, got {z.dtype}")
            num_codes = int(self.bundle.meta.get("num_codes", 10))
            if z.min() < 0 or z.max() >= num_codes:
                raise BackendError(f"{self.name}: codes must be in 0..{num_codes - 1}, got {z.min()}..{z.max()}")
            return np.ascontiguousarray(z, dtype=np.int64)
        return np.ascontiguousarray(z, dtype=np.float32)

    def _check_encoder_outputs(self, outputs: dict[str, np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
        expected_shape = (batch_size, *self.bundle.latent_shape)
        checked = {}
        for name in self.bundle.encoder_outputs:
            if name not in outputs:
                raise BackendError(f"{self.name}: encoder did not return {name!r} (got {sorted(outputs)})")
            value = np.asarray(outputs[name])
            if value.shape != expected_shape:
                raise BackendError(f"{self.name}: {name} has shape {value.shape}, expected {expected_shape}")
            if name == "codes":
                num_codes = int(self.bundle.meta.get("num_codes", 10))
                if value.min() < 0 or value.max() >= num_codes:
                    raise BackendError(f"{self.name}: codes outside 0..{num_codes - 1}")
                value = value.astype(np.uint8)
            else:
                value = np.asarray(value, dtype=np.float32)
                if not np.isfinite(value).all():
                    raise BackendError(f"{self.name}: {name} holds NaN or inf (non-finite input?)")
            checked[name] = value
        return checked
