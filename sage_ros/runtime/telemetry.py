"""`<output>/telemetry`: what SAGE's IRP plugin reads beside each latent, as plain numpy maths. No rclpy, no torch.

One message per latent / puzzle message, with its exact header (stamp + frame_id): a stock `sensor_msgs/Image`,
encoding 32FC1, height 1, width = number of fields, reliable QoS like the latent. The field names, their order and
their units are in `<output>/info` under the key `telemetry` (`telemetry_info(kind)`), so a consumer reads a field
by name (`unpack`), never by a position it assumed.

Fields (units in brackets):
- every model: crop_x, crop_y, crop_w, crop_h [source-frame px]: the region of the camera frame that became the
  model input (resize: the whole frame; center: the centred window; letterbox: the frame plus its black padding,
  so x or y is negative by the padding's size in source pixels; motion: the window actually used), motion_found
  [flag 0/1]: 1 when crop_mode is motion and this frame's difference energy passed the threshold (the window moved
  there), else 0 (first frame, no motion: the last window or the centre, and always 0 in other modes);
  source_width, source_height [px] of the camera frame (a compressed frame's declared size, also when it was
  decoded at reduced resolution); encode_ms [ms]: pre-processing + encoder of the batch the frame was in; total_ms
  [ms]: from the frame's arrival (the subscription callback) to its telemetry being ready, decode included;
  input_std [1]: standard deviation of the model input's pixels scaled to [0,1] (near 0: a blank, black, white or
  covered view, which every model reconstructs well, so a high trust there means nothing; see README);
  fingerprint_hi, fingerprint_mid, fingerprint_lo [uint16]: the 48-bit fingerprint of the model that made the latent
  (the info's `fingerprint`, 12 hex digits, as three 16-bit words, high first: exact in float32; the latent's identity
  row carries the same), so telemetry is never read with another model's field list (telemetry_from_message checks).
- TinyVAE family: recon_mse [1, per pixel and channel]: mean squared error of the mu-path decode against the model
  input, both scaled to [0,1]; recon_psnr_db [dB] = 10 log10(1 / recon_mse); kl_per_dim [nats]: KL(N(mu, sigma^2) ||
  N(0, 1)) summed over the latent and divided by its size; trust [0..1] = clamp(0.5 max(0, 1 - 10 recon_mse) +
  0.5 / (1 + kl_per_dim), 0, 1), SAGE's formula (dp-web4/HRM sage/irp/plugins/tinyvae_irp_plugin.py), kept for
  compatibility; latent_norm [1]: L2 norm of mu; latent_dim [1].
- VisionPuzzleVAE: recon_mse, recon_psnr_db of the decoded grid against the model input (both scaled to [0,1];
  NaN when the node's `telemetry_decode` is off), code_entropy_bits [bits]: Shannon entropy of the code histogram
  over the grid's cells (0 = one code everywhere, log2(10) = 3.32 = uniform), code_hist_0 .. code_hist_{K-1}
  [cells]: how many cells hold each code.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .fingerprint import from_words, to_words

TELEMETRY_SUFFIX = "/telemetry"
TELEMETRY_ENCODING = "32FC1"
TELEMETRY_LAYOUT = ("sensor_msgs/Image 32FC1, height 1, width len(fields), little endian: value i is fields[i] in "
                    "units[i]; NaN = not computed; header = the latent's")
TRUST_FORMULA = "clamp(0.5*max(0, 1-10*recon_mse) + 0.5/(1+kl_per_dim), 0, 1) (SAGE TinyVAE IRP)"

WINDOW_FIELDS = (("crop_x", "px"), ("crop_y", "px"), ("crop_w", "px"), ("crop_h", "px"), ("motion_found", "flag"),
                 ("source_width", "px"), ("source_height", "px"))
TAIL_FIELDS = (("encode_ms", "ms"), ("total_ms", "ms"), ("input_std", "1"),  # every model, after its own fields
               ("fingerprint_hi", "uint16"), ("fingerprint_mid", "uint16"), ("fingerprint_lo", "uint16"))
FINGERPRINT_FIELDS = ("fingerprint_hi", "fingerprint_mid", "fingerprint_lo")
LATENT_FIELDS = (*WINDOW_FIELDS, ("recon_mse", "1"), ("recon_psnr_db", "dB"), ("kl_per_dim", "nats"),
                 ("trust", "1"), ("latent_norm", "1"), ("latent_dim", "1"), *TAIL_FIELDS)


def puzzle_fields(codes: int = 10) -> tuple[tuple[str, str], ...]:
    return (*WINDOW_FIELDS, ("recon_mse", "1"), ("recon_psnr_db", "dB"), ("code_entropy_bits", "bits"),
            *((f"code_hist_{k}", "cells") for k in range(codes)), *TAIL_FIELDS)


def fields_for(kind: str, codes: int = 10) -> tuple[tuple[str, str], ...]:
    """(name, unit) of every telemetry value, in message order, for a "latent" or "puzzle" output."""
    if kind == "latent":
        return LATENT_FIELDS
    if kind == "puzzle":
        return puzzle_fields(codes)
    raise ValueError(f"kind must be 'latent' or 'puzzle', got {kind!r}")


def telemetry_info(kind: str, codes: int = 10) -> dict[str, Any]:
    """The `telemetry` entry of `<output>/info`: topic suffix, encoding, field names and units (parallel lists)."""
    fields = fields_for(kind, codes)
    info = {"topic": TELEMETRY_SUFFIX.lstrip("/"), "encoding": TELEMETRY_ENCODING, "layout": TELEMETRY_LAYOUT,
            "fields": [name for name, _ in fields], "units": [unit for _, unit in fields]}
    if kind == "latent":
        info["trust"] = TRUST_FORMULA
    return info


def telemetry_topic(output_topic: str) -> str:
    """'latent' -> 'latent/telemetry', '/front/puzzle' -> '/front/puzzle/telemetry'."""
    return output_topic.rstrip("/") + TELEMETRY_SUFFIX


# --- the crop window ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CropWindow:
    """The region of a frame that became the model input, in that frame's pixels: model-input pixel (u, v) (of a
    W x H input) covers frame x in [x + u w / W, x + (u+1) w / W), likewise y. Letterbox windows reach past the frame
    (negative x / y): those parts are the black padding. motion_found: see the module docstring."""
    x: float
    y: float
    w: float
    h: float
    motion_found: bool = False

    def scaled(self, sx: float, sy: float) -> "CropWindow":
        """The same window in a frame `sx` x `sy` times the size (a JPEG decoded at 1/2, 1/4, 1/8 -> its source)."""
        return CropWindow(self.x * sx, self.y * sy, self.w * sx, self.h * sy, self.motion_found)

    def in_source(self, decoded_hw: tuple[int, int], source_hw: tuple[int, int] | None) -> "CropWindow":
        """This window (in the decoded frame's pixels) in the source frame's pixels (`source_hw` None: the same)."""
        if source_hw is None or tuple(source_hw) == tuple(decoded_hw):
            return self
        return self.scaled(source_hw[1] / decoded_hw[1], source_hw[0] / decoded_hw[0])

    def as_tuple(self) -> tuple[float, float, float, float]:
        return self.x, self.y, self.w, self.h


def letterbox_window(frame_hw: tuple[int, int], placement: tuple[int, int, int, int],
                     size: tuple[int, int]) -> CropWindow:
    """A letterboxed input as a window of the frame: the frame went to `placement` (top, left, new_h, new_w) of the
    model's (h, w) canvas, so the whole canvas covers the frame plus the padding, scaled back per axis."""
    frame_h, frame_w = frame_hw
    top, left, new_h, new_w = placement
    sy, sx = frame_h / new_h, frame_w / new_w  # source px per model px (per axis: the sizes were rounded)
    return CropWindow(-left * sx, -top * sy, size[1] * sx, size[0] * sy)


# --- the numbers -------------------------------------------------------------------------------------------------

def kl_per_dim(mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """KL(N(mu, exp(logvar)) || N(0, I)) / L per row (nats): -0.5 mean(1 + logvar - mu^2 - exp(logvar))."""
    mu, logvar = np.asarray(mu, np.float64), np.asarray(logvar, np.float64)
    return -0.5 * np.mean(1.0 + logvar - mu * mu - np.exp(logvar), axis=-1)


def trust(recon_mse: np.ndarray | float, kl: np.ndarray | float) -> np.ndarray:
    """SAGE's TinyVAE IRP trust (kept for compatibility): clamp(0.5 max(0, 1 - 10 mse) + 0.5 / (1 + kl), 0, 1)."""
    recon_mse, kl = np.asarray(recon_mse, np.float64), np.asarray(kl, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 0.5 * np.maximum(0.0, 1.0 - 10.0 * recon_mse) + 0.5 / (1.0 + kl)
    return np.clip(value, 0.0, 1.0)


def recon_mse(inputs: np.ndarray, recons: np.ndarray, input_range: tuple[float, float]) -> np.ndarray:
    """Per-row MSE of two N x ... batches in `input_range`, after scaling both to [0, 1]."""
    lo, hi = input_range
    diff = (np.asarray(recons, np.float32) - np.asarray(inputs, np.float32)).reshape(len(inputs), -1)
    # einsum: one pass, float32 products summed per row (the batch is a few frames of 12k-150k values)
    return np.einsum("ij,ij->i", diff, diff).astype(np.float64) / (diff.shape[1] * (hi - lo) ** 2)


def psnr_db(mse: np.ndarray | float) -> np.ndarray:
    """10 log10(1 / mse) for images in [0, 1] (inf for a perfect reconstruction)."""
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(1.0 / np.asarray(mse, np.float64))


def _psnr(mse: float) -> float:
    """psnr_db for one Python float, without numpy's per-call overhead (NaN stays NaN)."""
    if math.isnan(mse):
        return math.nan
    return 10.0 * math.log10(1.0 / mse) if mse > 0 else math.inf


def code_histogram(codes: np.ndarray, num_codes: int = 10) -> np.ndarray:
    """N x grid codes -> N x num_codes cell counts."""
    codes = np.asarray(codes).reshape(np.shape(codes)[0], -1).astype(np.int64)
    offsets = (np.arange(codes.shape[0]) * num_codes)[:, None]
    return np.bincount((codes + offsets).ravel(), minlength=codes.shape[0] * num_codes).reshape(-1, num_codes)


def entropy_bits(histogram: np.ndarray) -> np.ndarray:
    """Shannon entropy (bits) of each row of counts."""
    counts = np.asarray(histogram, np.float64)
    p = counts / np.maximum(counts.sum(axis=-1, keepdims=True), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log2(np.where(p > 0, p, 1.0)), 0.0)
    return terms.sum(axis=-1) + 0.0  # + 0.0: no -0.0 for a single code


def input_std(inputs: np.ndarray, input_range: tuple[float, float]) -> np.ndarray:
    """Per-row standard deviation of N x ... model inputs scaled to [0, 1]."""
    lo, hi = input_range
    flat = np.asarray(inputs, np.float32).reshape(len(inputs), -1)
    centred = flat - flat.mean(axis=1, keepdims=True)
    return np.sqrt(np.einsum("ij,ij->i", centred, centred).astype(np.float64) / flat.shape[1]) / (hi - lo)


def latent_rows(outputs: dict[str, np.ndarray], inputs: np.ndarray, recons: np.ndarray | None,
                input_range: tuple[float, float], num_codes: int = 10) -> list[dict[str, float]]:
    """Model-specific fields per row of a batch (no window, no timing): from mu/logvar or codes, the model `inputs`
    and their decode `recons` (both N x 3 x h x w in input_range; recons None: recon fields NaN)."""
    if recons is not None:
        mse = recon_mse(inputs, recons, input_range)
    else:
        mse = np.full(len(inputs), np.nan)
    psnr = [_psnr(float(value)) for value in mse]
    spread = input_std(inputs, input_range)
    if "codes" in outputs:
        hist = code_histogram(outputs["codes"], num_codes)
        ent = entropy_bits(hist)
        return [{"recon_mse": float(mse[i]), "recon_psnr_db": float(psnr[i]), "code_entropy_bits": float(ent[i]),
                 **{f"code_hist_{k}": float(hist[i, k]) for k in range(num_codes)}, "input_std": float(spread[i])}
                for i in range(len(hist))]
    mu, logvar = outputs["mu"], outputs["logvar"]
    kl = kl_per_dim(mu, logvar)
    norm = np.sqrt(np.einsum("ij,ij->i", mu, mu).astype(np.float64))
    rows = []
    for i in range(len(mu)):  # scalars: Python floats are cheaper than numpy for a few frames
        row_mse, row_kl = float(mse[i]), float(kl[i])
        row_trust = min(1.0, max(0.0, 0.5 * max(0.0, 1.0 - 10.0 * row_mse) + 0.5 / (1.0 + row_kl))) \
            if math.isfinite(row_mse) and row_kl > -1.0 else math.nan
        rows.append({"recon_mse": row_mse, "recon_psnr_db": float(psnr[i]), "kl_per_dim": row_kl,
                     "trust": row_trust, "latent_norm": float(norm[i]), "latent_dim": float(mu.shape[-1]),
                     "input_std": float(spread[i])})
    return rows


def window_fields(window: CropWindow, source_hw: tuple[int, int]) -> dict[str, float]:
    return {"crop_x": window.x, "crop_y": window.y, "crop_w": window.w, "crop_h": window.h,
            "motion_found": float(window.motion_found), "source_width": float(source_hw[1]),
            "source_height": float(source_hw[0])}


# --- the message -------------------------------------------------------------------------------------------------

class TelemetryError(ValueError):
    """A telemetry message that does not fit the field list it is read with."""


def pack(values: dict[str, float], fields: Sequence[tuple[str, str]] | Sequence[str]) -> np.ndarray:
    """{name: value} -> float32 1 x len(fields) in field order (a missing name is NaN)."""
    names = [f if isinstance(f, str) else f[0] for f in fields]
    return np.array([[values.get(name, math.nan) for name in names]], np.float32)


def unpack(row: np.ndarray, fields: Sequence[tuple[str, str]] | Sequence[str]) -> dict[str, float]:
    """float32 vector (or 1 x N) -> {name: value}; TelemetryError when the length differs from the fields'."""
    names = [f if isinstance(f, str) else f[0] for f in fields]
    values = np.asarray(row, np.float32).reshape(-1)
    if values.size != len(names):
        raise TelemetryError(f"telemetry has {values.size} values but its info names {len(names)} fields")
    return {name: float(value) for name, value in zip(names, values)}


def telemetry_from_message(msg: Any, info: Any) -> dict[str, float]:
    """A `<output>/telemetry` Image + the output's info (LatentInfo or dict) -> {field: value}; TelemetryError if it
    does not fit the info's field list (or the info has none)."""
    from .image_codec import ImageConversionError, image_to_numpy

    raw = getattr(info, "raw", info)
    spec = raw.get("telemetry") if isinstance(raw, dict) else None
    if not isinstance(spec, dict) or not isinstance(spec.get("fields"), list):
        raise TelemetryError("the info has no telemetry field list (an encoder older than telemetry?)")
    if msg.encoding != TELEMETRY_ENCODING or int(msg.height) != 1:
        raise TelemetryError(f"telemetry must be {TELEMETRY_ENCODING} with height 1, got {msg.encoding} "
                             f"{msg.height} x {msg.width}")
    try:
        array = image_to_numpy(msg)
    except ImageConversionError as err:
        raise TelemetryError(f"malformed telemetry message: {err}") from None
    values = unpack(array, spec["fields"])
    made_by, expected = telemetry_fingerprint(values), raw.get("fingerprint")
    if made_by is not None and expected is not None and made_by != expected:
        raise TelemetryError(f"telemetry made by model {made_by}, but the info is of {raw.get('model')} ({expected})")
    return values


def fingerprint_fields(fingerprint: str) -> dict[str, float]:
    """12 hex digits -> the three 16-bit words telemetry carries (high first)."""
    return {name: float(word) for name, word in zip(FINGERPRINT_FIELDS, to_words(fingerprint))}


def telemetry_fingerprint(values: dict[str, float]) -> str | None:
    """The model fingerprint (12 hex digits) a telemetry record carries, None when it carries none."""
    return from_words(values.get(name) for name in FINGERPRINT_FIELDS)


def telemetry_images(rows: Sequence[dict[str, float]], fields: Sequence[tuple[str, str]], headers: Sequence[Any],
                     msg_factory=None) -> list[Any]:
    """Rows -> `<output>/telemetry` Images (32FC1, 1 x len(fields)) with headers[i]."""
    from .image_codec import numpy_to_image

    return [numpy_to_image(pack(row, fields), TELEMETRY_ENCODING, header=header,
                           msg=msg_factory() if msg_factory else None) for row, header in zip(rows, headers)]


# --- one batch, as the encoder node and `bag encode` make it ---------------------------------------------------------

def source_hw(msg: Any, compressed: bool) -> tuple[int, int]:
    """(height, width) of the camera frame a message carries: a CompressedImage's declared size (it may have been
    decoded at 1/2, 1/4 or 1/8 of it), else the Image's."""
    if compressed:
        from .image_codec import check_compressed

        return check_compressed(msg, None)[1]
    return int(msg.height), int(msg.width)


def batch_telemetry(backend, prepared, outputs: dict[str, np.ndarray], *, frames_hw: Sequence[tuple[int, int]],
                    sources_hw: Sequence[tuple[int, int] | None] | None = None, encode_s: float = math.nan,
                    received: Sequence[float] | None = None, decode: bool = True, clock=time.monotonic
                    ) -> list[dict[str, float]]:
    """Telemetry of one encoded batch: {field: value} per frame.

    backend: the one that encoded (its bundle's decoder.onnx decodes mu / the codes when `decode`); prepared: the
    preprocess.Prepared the encoder took (model input + crop windows); frames_hw: each decoded frame's (h, w);
    sources_hw: each source frame's (h, w) when it differs (a JPEG decoded at reduced size); encode_s: seconds of
    pre-processing + encoder for the batch; received: each frame's arrival on `clock` (total_ms counts from it).
    """
    bundle = backend.bundle
    recons = None
    if decode:
        recons = backend.decode(outputs["codes"] if "codes" in outputs else outputs["mu"])
    rows = latent_rows(outputs, prepared.batch, recons, bundle.input_range,
                       int(bundle.meta.get("num_codes", 10)))
    end = clock()
    sources_hw = sources_hw or [None] * len(rows)
    for index, row in enumerate(rows):
        source = tuple(sources_hw[index] or frames_hw[index])
        row.update(window_fields(prepared.windows[index].in_source(frames_hw[index], source), source))
        row["encode_ms"] = encode_s * 1e3
        row["total_ms"] = (end - received[index]) * 1e3 if received is not None else math.nan
        if "fingerprint" in outputs:
            row.update(fingerprint_fields(str(outputs["fingerprint"][index])))
    return rows


def warm_decoder(backend, publish: bool = True, puzzle_decode: bool = False) -> None:
    """Run the decoder once on a zero latent when telemetry will decode (a backend opens its decoder on first use,
    which would otherwise land on the first frame's telemetry)."""
    bundle = backend.bundle
    if not publish or (bundle.is_vq and not puzzle_decode):
        return
    shape = (1, *bundle.latent_shape)
    backend.decode(np.zeros(shape, np.int64 if bundle.is_vq else np.float32))


def kind_of(bundle) -> str:
    return "puzzle" if bundle.is_vq else "latent"


def bundle_fields(bundle) -> tuple[tuple[str, str], ...]:
    return fields_for(kind_of(bundle), int(bundle.meta.get("num_codes", 10)))


# --- looking at it -------------------------------------------------------------------------------------------------

def overlay_reconstruction(frame: np.ndarray, reconstruction: np.ndarray, values: dict[str, float],
                           colour: tuple[int, int, int] = (255, 59, 48), thickness: int = 2) -> np.ndarray:
    """The camera frame (H x W x 3 uint8) with the latent's `reconstruction` (h x w x 3 uint8, the model's input
    size) resized into the crop window that telemetry `values` report, and the window outlined: the latent drawn
    back where the model looked. The window is scaled when the frame is not the source size telemetry names
    (a reduced copy); the parts of a letterbox window outside the frame (its padding) are cut off."""
    import cv2

    frame_h, frame_w = frame.shape[:2]
    sx = frame_w / values.get("source_width", frame_w) if values.get("source_width") else 1.0
    sy = frame_h / values.get("source_height", frame_h) if values.get("source_height") else 1.0
    x, y = values["crop_x"] * sx, values["crop_y"] * sy
    w, h = values["crop_w"] * sx, values["crop_h"] * sy
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w < 1 or h < 1:
        raise ValueError(f"telemetry window {x, y, w, h} is not a window")
    left, top, width, height = int(round(x)), int(round(y)), int(round(w)), int(round(h))
    resized = cv2.resize(np.ascontiguousarray(reconstruction), (width, height), interpolation=cv2.INTER_LINEAR)
    out = frame.copy()
    x0, y0 = max(0, left), max(0, top)
    x1, y1 = min(frame_w, left + width), min(frame_h, top + height)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"telemetry window {left, top, width, height} lies outside the {frame_w}x{frame_h} frame")
    out[y0:y1, x0:x1] = resized[y0 - top:y1 - top, x0 - left:x1 - left]
    cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), colour, thickness)
    return out
