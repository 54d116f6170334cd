"""Honest evaluation: a float reference and a compressed candidate, run separately on held-out images, on the
deterministic path (eval mode, z = mu; codes for the VQ model).

    from sage_ros.compression.evaluate import evaluate_pair
    result = evaluate_pair(float_model, int4_model, test_images_uint8_nhwc)

Either side may be a torch model, an ONNX bundle directory (run with onnxruntime, so a bundle's quality is
measured on the graph that ships), or any object with the `Codec` interface below.

Quality numbers compare each reconstruction with the ORIGINAL image (not with the float reconstruction):
MSE and PSNR on [0, 1], SSIM (Gaussian 11 / sigma 1.5, see metrics.py). Latent drift compares candidate mu
with reference mu (relative L2, cosine); for VisionPuzzleVAE, code agreement is the % of the 30 x 30 code
cells equal to the reference's (plus drift of the pre-quantisation latent where both sides expose it).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import metrics


class EvaluationError(ValueError):
    """Images or models that cannot be evaluated together."""


# ---------------------------------------------------------------- codecs: one interface for torch and ONNX

class TorchCodec:
    """A sage_ros torch model behind numpy encode/decode (eval mode, no grad)."""

    def __init__(self, model: nn.Module, label: str | None = None):
        self.model = model
        self.label = label or type(model).__name__
        self.image_size = int(model.image_size)
        self.input_range = tuple(float(v) for v in model.input_range)
        self.is_vq = hasattr(model, "num_codes")

    @torch.no_grad()
    def encode(self, x: np.ndarray) -> dict:
        x = torch.from_numpy(x)
        if self.is_vq:
            z_e = self.model.encode_continuous(x)
            return {"codes": self.model.quantize(z_e).numpy(), "z_e": z_e.numpy()}
        mu, logvar = self.model.encode(x)
        return {"mu": mu.numpy(), "logvar": logvar.numpy()}

    @torch.no_grad()
    def decode(self, latent: np.ndarray) -> np.ndarray:
        return self.model.decode(torch.from_numpy(latent)).numpy()


class OnnxCodec:
    """A bundle directory (encoder.onnx + decoder.onnx + bundle.json) run with onnxruntime on the CPU."""

    def __init__(self, bundle_dir: str | Path, label: str | None = None):
        import onnxruntime as ort

        from sage_ros.runtime.bundle import BundleError, load_bundle

        bundle_dir = Path(bundle_dir)
        try:
            meta = load_bundle(bundle_dir).meta  # checksums + graph io verified, as on the robot
        except BundleError as exc:
            raise EvaluationError(str(exc)) from exc
        self.meta = meta
        self.label = label or f"onnx-{meta.get('precision', '?')}"
        self.image_size = int(meta["input"]["height"])
        self.input_range = tuple(float(v) for v in meta["input"]["range"])
        self.is_vq = meta["architecture"] == "VisionPuzzleVAE"
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        self.encoder = ort.InferenceSession(str(bundle_dir / meta.get("encoder", {}).get("file", "encoder.onnx")),
                                            opts, providers=providers)
        self.decoder = ort.InferenceSession(str(bundle_dir / meta.get("decoder", {}).get("file", "decoder.onnx")),
                                            opts, providers=providers)

    def encode(self, x: np.ndarray) -> dict:
        names = [o.name for o in self.encoder.get_outputs()]
        return dict(zip(names, self.encoder.run(None, {"image": x.astype(np.float32)})))

    def decode(self, latent: np.ndarray) -> np.ndarray:
        feed = latent.astype(np.int64) if self.is_vq else latent.astype(np.float32)
        return self.decoder.run(None, {"z": feed})[0]


def as_codec(model, label: str | None = None):
    if isinstance(model, nn.Module):
        return TorchCodec(model, label)
    if isinstance(model, (str, Path)):
        return OnnxCodec(model, label)
    if all(hasattr(model, a) for a in ("encode", "decode", "input_range", "image_size", "is_vq")):
        return model
    raise EvaluationError(f"cannot evaluate {type(model).__name__}: expected nn.Module, bundle dir, or codec")


def _latent(codec, encoded: dict) -> np.ndarray:
    return encoded["codes"] if codec.is_vq else encoded["mu"]


# ---------------------------------------------------------------- images

def to_input(images_uint8: np.ndarray, input_range) -> np.ndarray:
    """uint8 NHWC -> float32 NCHW in the model's input range."""
    x = images_uint8.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    lo, hi = input_range
    return (x * (hi - lo) + lo).astype(np.float32)


def to_unit(output: np.ndarray, output_range) -> torch.Tensor:
    """Model output in its range -> float tensor clipped to [0, 1] (what a viewer would show)."""
    lo, hi = output_range
    return torch.from_numpy(np.clip((output.astype(np.float64) - lo) / (hi - lo), 0.0, 1.0))


def check_images(images, size: int) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
        raise EvaluationError(f"expected uint8 N x H x W x 3 images, got {images.dtype} {images.shape}")
    if images.shape[1:3] != (size, size):
        raise EvaluationError(f"model takes {size}x{size} images, got {images.shape[1]}x{images.shape[2]}")
    return images


# ---------------------------------------------------------------- evaluation

class _Quality:
    """Per-image MSE / PSNR / SSIM accumulated over batches."""

    def __init__(self):
        self.mse, self.psnr, self.ssim = [], [], []

    def add(self, original: torch.Tensor, recon: torch.Tensor) -> None:
        self.mse.append(metrics.mse_per_image(original, recon))
        self.psnr.append(metrics.psnr_per_image(original, recon))
        self.ssim.append(metrics.ssim_per_image(original, recon))

    def summary(self) -> dict:
        return {k: float(torch.cat(getattr(self, k)).mean()) for k in ("mse", "psnr", "ssim")}


def _modes(codecs):
    """Put torch models in eval mode for the evaluation; returns a function that restores their modes."""
    saved = [(c.model, c.model.training) for c in codecs if isinstance(c, TorchCodec)]
    for m, _ in saved:
        m.eval()
    return lambda: [m.train(t) for m, t in saved]


# Pixels per evaluation chunk: 256 images at 64 px. The float64 originals, SSIM filter maps and onnxruntime
# activations all scale with it; 256 images of 224 px (12x more pixels) were OOM-killed at 21 GB here.
CHUNK_PIXELS = 256 * 64 * 64


def _chunk(batch_size: int, image_size: int) -> int:
    """`batch_size`, lowered so that one chunk holds at most CHUNK_PIXELS pixels."""
    return max(1, min(batch_size, CHUNK_PIXELS // (image_size * image_size)))


def evaluate_pair(reference, candidate, images_uint8_nhwc, batch_size: int = 256) -> dict:
    """Quality of `candidate` and of `reference` on the images, and candidate's latent drift from reference."""
    ref, cand = as_codec(reference, "reference"), as_codec(candidate, "candidate")
    if (ref.image_size, ref.input_range, ref.is_vq) != (cand.image_size, cand.input_range, cand.is_vq):
        raise EvaluationError("reference and candidate are not the same kind of model "
                              f"({ref.image_size}/{ref.input_range}/vq={ref.is_vq} vs "
                              f"{cand.image_size}/{cand.input_range}/vq={cand.is_vq})")
    images = check_images(images_uint8_nhwc, ref.image_size)
    batch_size = _chunk(batch_size, ref.image_size)
    restore = _modes([ref, cand])
    try:
        q_ref, q_cand = _Quality(), _Quality()
        lat_ref, lat_cand, agree, counts = [], [], [], []
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            original = torch.from_numpy(chunk.transpose(0, 3, 1, 2).astype(np.float64) / 255.0)
            x = to_input(chunk, ref.input_range)
            enc_r, enc_c = ref.encode(x), cand.encode(x)
            q_ref.add(original, to_unit(ref.decode(_latent(ref, enc_r)), ref.input_range))
            q_cand.add(original, to_unit(cand.decode(_latent(cand, enc_c)), cand.input_range))
            drift_key = "z_e" if ref.is_vq else "mu"
            if drift_key in enc_r and drift_key in enc_c:
                lat_ref.append(torch.from_numpy(enc_r[drift_key]))
                lat_cand.append(torch.from_numpy(enc_c[drift_key]))
            if ref.is_vq:
                agree.append(torch.from_numpy((enc_r["codes"] == enc_c["codes"]).reshape(len(chunk), -1)))
                counts.append(np.bincount(np.asarray(enc_c["codes"]).astype(np.int64).ravel(), minlength=1))
    finally:
        restore()
    result = {"n_images": int(len(images)), **q_cand.summary(), "reference": q_ref.summary()}
    result["delta_psnr"] = result["psnr"] - result["reference"]["psnr"]
    if lat_ref:
        result.update(metrics.latent_drift(torch.cat(lat_ref), torch.cat(lat_cand)))
    else:
        result.update(mu_rel_l2=None, mu_cosine=None)
    if ref.is_vq:
        result["code_agreement"] = 100.0 * float(torch.cat(agree).double().mean())
        width = max(len(c) for c in counts)
        usage = code_usage(sum(np.pad(c, (0, width - len(c))) for c in counts))  # candidate's codes
        result.update(codes_used=usage["codes_used"], code_perplexity=usage["code_perplexity"])
    return result


def evaluate_single(model, images_uint8_nhwc, batch_size: int = 256) -> dict:
    """MSE / PSNR / SSIM of one model against the original images."""
    codec = as_codec(model)
    images = check_images(images_uint8_nhwc, codec.image_size)
    batch_size = _chunk(batch_size, codec.image_size)
    restore = _modes([codec])
    try:
        quality = _Quality()
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            original = torch.from_numpy(chunk.transpose(0, 3, 1, 2).astype(np.float64) / 255.0)
            encoded = codec.encode(to_input(chunk, codec.input_range))
            quality.add(original, to_unit(codec.decode(_latent(codec, encoded)), codec.input_range))
    finally:
        restore()
    return {"n_images": int(len(images)), **quality.summary()}


def reconstruct(model, images_uint8_nhwc) -> np.ndarray:
    """Reconstructions as uint8 NHWC (for grids)."""
    codec = as_codec(model)
    images = check_images(images_uint8_nhwc, codec.image_size)
    restore = _modes([codec])
    try:
        encoded = codec.encode(to_input(images, codec.input_range))
        unit = to_unit(codec.decode(_latent(codec, encoded)), codec.input_range).numpy()
    finally:
        restore()
    return np.round(unit.transpose(0, 2, 3, 1) * 255.0).astype(np.uint8)


# ---------------------------------------------------------------- PCA baseline

PCA_MAX_TRAIN_BYTES = 256 * 2 ** 20  # cap on the float32 training matrix (224 px images are 600 KB each)


_PCA_FITS: dict = {}  # id(train array) -> (the array, mean, vh): one exact SVD per training set and process


def _pca_fit(train_uint8: np.ndarray, seed: int) -> tuple[int, torch.Tensor, torch.Tensor]:
    """(images used, mean, right singular vectors) of the centred training matrix, capped at PCA_MAX_TRAIN_BYTES
    by a seeded subsample. Cached, because an ablation asks for PCA-L at five L and on three views of the same
    training set (one exact SVD of 5,461 x 12,288 takes minutes here)."""
    key = (id(train_uint8), seed)
    cached = _PCA_FITS.get(key)
    if cached is not None and cached[0] is train_uint8:
        return cached[1:]
    n, h, w, c = train_uint8.shape
    max_n = max(2, PCA_MAX_TRAIN_BYTES // (4 * h * w * c))
    used = train_uint8[np.random.default_rng(seed).choice(n, max_n, replace=False)] if n > max_n else train_uint8
    x = torch.from_numpy(used.reshape(len(used), -1).astype(np.float32) / 255.0)
    mean = x.mean(dim=0)
    _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)
    _PCA_FITS.clear()  # keep one fit: the basis of a 64 px set is ~270 MB
    _PCA_FITS[key] = (train_uint8, len(used), mean, vh)
    return len(used), mean, vh


def pca_baseline(train_uint8: np.ndarray, test_uint8: np.ndarray, n_components: int, seed: int = 0,
                 return_basis: bool = False) -> dict:
    """Linear baseline with the same number of latent values: PCA fit on train, MSE/PSNR/SSIM on test.

    A model whose reconstruction is no better than this has learnt nothing a projection could not do.
    Fit by SVD of the centred training matrix (exact; the matrix is capped at PCA_MAX_TRAIN_BYTES by a seeded
    subsample); n_components is capped at n_train - 1 and the cap is reported. return_basis adds the
    float32 "basis" (k x D) and "mean" (D) tensors, so that a caller can store them and report real bytes.
    """
    n, h, w, c = train_uint8.shape
    dim = h * w * c
    n_used, mean, vh = _pca_fit(train_uint8, seed)
    k = int(min(n_components, n_used - 1, dim))
    basis = vh[:k]
    test = check_images(test_uint8, h)
    t = torch.from_numpy(test.reshape(len(test), -1).astype(np.float32) / 255.0)
    recon = ((t - mean) @ basis.T) @ basis + mean
    to_nchw = lambda a: a.reshape(len(test), h, w, c).permute(0, 3, 1, 2).double().clamp(0, 1)  # noqa: E731
    quality = _Quality()
    quality.add(to_nchw(t), to_nchw(recon))
    result = {"n_components": k, "n_components_requested": int(n_components), "n_train": int(n_used),
              **quality.summary()}
    if return_basis:
        result.update(basis=basis.contiguous(), mean=mean)
    return result


# ---------------------------------------------------------------- palette baseline (VisionPuzzleVAE)

def _cells(images_uint8: np.ndarray, grid: int) -> np.ndarray:
    """uint8 NHWC -> float32 N x grid x grid x 3 cell colours in [0, 1] (cv2.INTER_AREA, the project's resize)."""
    import cv2

    return np.stack([cv2.resize(im, (grid, grid), interpolation=cv2.INTER_AREA) for im in images_uint8]
                    ).astype(np.float32) / 255.0


def fit_palette(train_uint8: np.ndarray, n_colors: int = 10, grid: int = 30, max_points: int = 200_000,
                seed: int = 0) -> np.ndarray:
    """k-means palette (n_colors x 3 in [0, 1]) of the grid x grid cell colours of the training images."""
    cells = _cells(train_uint8, grid).reshape(-1, 3)
    if len(cells) > max_points:
        cells = cells[np.random.default_rng(seed).choice(len(cells), max_points, replace=False)]
    from .vq import kmeans

    return kmeans(cells, n_colors, seed=seed).numpy()


def palette_reconstruct(images_uint8: np.ndarray, palette: np.ndarray, grid: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """(float64 N x 3 x H x W reconstructions in [0, 1], N x grid x grid indices): each image area-resized to
    grid x grid, each cell replaced by its nearest palette colour, bilinearly upsampled (half-pixel centres,
    = torch's align_corners=False) back to the image size."""
    n, h, w, _ = images_uint8.shape
    cells = torch.from_numpy(_cells(images_uint8, grid))
    pal = torch.from_numpy(np.asarray(palette, np.float32))
    index = torch.cdist(cells.reshape(-1, 3), pal).argmin(dim=1)
    small = pal[index].reshape(n, grid, grid, 3).permute(0, 3, 1, 2).double()
    up = torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return up.clamp(0.0, 1.0).numpy(), index.reshape(n, grid, grid).numpy()


def palette_baseline(train_uint8: np.ndarray, test_uint8: np.ndarray, n_colors: int = 10, grid: int = 30,
                     seed: int = 0, batch_size: int = 64) -> dict:
    """The VisionPuzzleVAE's information-equivalent baseline: a grid x grid map of n_colors palette indices
    (the palette fitted by k-means on the training images' cells), decoded by bilinear upsampling.
    MSE / PSNR / SSIM on the test images, as the models are measured; plus palette usage."""
    palette = fit_palette(train_uint8, n_colors, grid, seed=seed)
    test = np.asarray(test_uint8)
    quality, counts = _Quality(), np.zeros(n_colors, np.int64)
    for start in range(0, len(test), batch_size):
        chunk = test[start:start + batch_size]
        recon, index = palette_reconstruct(chunk, palette, grid)
        original = torch.from_numpy(chunk.transpose(0, 3, 1, 2).astype(np.float64) / 255.0)
        quality.add(original, torch.from_numpy(recon))
        counts += np.bincount(index.ravel(), minlength=n_colors)
    return {"n_colors": int(n_colors), "grid": int(grid), "n_train": int(len(train_uint8)),
            "palette": np.round(palette, 5).tolist(), **quality.summary(), **code_usage(counts)}


def code_usage(counts) -> dict:
    """codes used (count > 0) and perplexity exp(H) of a code histogram (= the number of codes if uniform)."""
    counts = np.asarray(counts, np.float64)
    p = counts[counts > 0] / counts.sum()
    return {"codes_used": int((counts > 0).sum()), "code_perplexity": float(np.exp(-(p * np.log(p)).sum())),
            "code_counts": [int(c) for c in counts]}
