"""torch backend: the reference. Rebuilds the sage_ros.models class from bundle.json (`architecture`,
`latent_dim`, `num_codes`) and loads `torch_weights` (model.safetensors). torch is imported here, lazily, only
when this backend is made, so the runtime package stays torch-free.

fp16 bundles still run the float32 reference weights here (export keeps them), so torch-vs-onnxruntime parity
of an fp16 bundle measures the fp16 error itself. A bundle whose bundle.json says
`"torch_weights_format": "sage_ros.quantized"` is loaded with sage_ros.compression.quantize.load_quantized.
"""
from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from ..bundle import Bundle
from .base import Backend, BackendError, BackendUnavailable


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, bundle: Bundle, device: str = "cpu", *, threads: int = 0):
        super().__init__(bundle, device)
        weights = bundle.torch_weights_path
        if weights is None:
            raise BackendUnavailable(f"torch backend needs `torch_weights` (model.safetensors) in "
                                     f"{bundle.path / 'bundle.json'}; re-export the bundle with "
                                     "sage_ros.compression.export.export_bundle")
        try:
            import torch
        except ImportError as err:
            raise BackendUnavailable(f"torch backend needs torch ({err})") from None
        self._torch = torch
        if threads:
            torch.set_num_threads(int(threads))
        if self.device_kind == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable(f"torch backend: device {device!r} asked for but torch sees no CUDA device")
        self._torch_device = torch.device(device)
        self.model = self._load_model(weights).to(self._torch_device).eval()

    def _load_model(self, weights):
        meta = self.bundle.meta
        if meta.get("torch_weights_format") == "sage_ros.quantized":
            from sage_ros.compression.quantize import load_quantized
            return load_quantized(weights).float()
        from safetensors.torch import load as load_bytes
        from sage_ros.models import build_model

        latent_dim = meta.get("latent_dim")
        if latent_dim is None and not self.bundle.is_vq:
            latent_dim = self.bundle.latent_shape[0]
        if latent_dim is None:
            raise BackendError(f"{self.bundle.path / 'bundle.json'}: VisionPuzzleVAE bundles need `latent_dim` "
                               "for the torch backend")
        kwargs = {"num_codes": int(meta["num_codes"])} if self.bundle.is_vq and "num_codes" in meta else {}
        model = build_model(self.bundle.architecture, int(latent_dim)) if not kwargs else \
            type(build_model(self.bundle.architecture, int(latent_dim)))(latent_dim=int(latent_dim), **kwargs)
        try:
            model.load_state_dict(load_bytes(self.bundle.file_bytes(weights.name)), strict=True)  # verified bytes
        except (RuntimeError, KeyError) as err:
            raise BackendError(f"{weights}: weights do not fit {self.bundle.architecture}"
                               f"(latent_dim={latent_dim}): {err}") from None
        return model.float()

    @contextlib.contextmanager
    def _full_fp32(self):
        """No TF32 on CUDA while the reference runs: cuDNN convolutions default to TF32 on Ampere and later,
        which moved TinyVAE's mu by 2.4e-4 on an H200 (above the fp32 tolerance of 1e-4)."""
        if self.device_kind != "cuda":
            yield
            return
        backends = self._torch.backends
        saved = backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32
        backends.cudnn.allow_tf32 = backends.cuda.matmul.allow_tf32 = False
        try:
            yield
        finally:
            backends.cudnn.allow_tf32, backends.cuda.matmul.allow_tf32 = saved

    def _run_encoder(self, images: np.ndarray) -> dict[str, np.ndarray]:
        torch = self._torch
        with torch.inference_mode(), self._full_fp32():
            out = self.model.encode(torch.from_numpy(images).to(self._torch_device))
        if self.bundle.is_vq:
            return {"codes": out.cpu().numpy()}
        mu, logvar = out
        return {"mu": mu.float().cpu().numpy(), "logvar": logvar.float().cpu().numpy()}

    def _run_decoder(self, latent: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode(), self._full_fp32():
            return self.model.decode(torch.from_numpy(latent).to(self._torch_device)).float().cpu().numpy()

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["torch"] = self._torch.__version__
        return info

    def close(self) -> None:
        self.model = None
        super().close()
