"""`<output>/info`: the JSON that says which model made the latents on `latent` / `puzzle`. No rclpy, no torch.

The encoder node publishes `model_info(bundle, crop_mode)` as a std_msgs/String (reliable, transient-local,
depth 1: latched) beside every output topic when it activates and again whenever the bundle or the crop mode
changes, always before the first latent that the new model made. `sage-ros bag encode` writes the same
object into its bag. Consumers parse it with `LatentInfo.parse` and check messages against it (consumer.py).

Keys (format_version 1; a consumer must ignore keys it does not know):
- format_version  int, 1. Bumped only when a key changes meaning or goes away.
- kind            "latent" (TinyVAE family: Gaussian latents) or "puzzle" (VisionPuzzleVAE: a grid of codes).
- model           the bundle's name (bundle.json "name").
- architecture    TinyVAE | TinyVAE32 | VisionPuzzleVAE.
- precision       fp32 | fp16 | int8 | int4 (the bundle's weights; messages are float32 / uint8 regardless).
- encoder_sha256  sha256 of the bundle's encoder.onnx (bundle.json "files"): which exact graph encoded.
- decoder_sha256  sha256 of its decoder.onnx: which decoder turns these latents back into images.
- latent_dim      (kind "latent") L, the size of mu and of log sigma^2.
- grid, codes     (kind "puzzle") [rows, cols] of the code grid (30 x 30) and the codebook size (values 0..codes-1).
- encoding        the sensor_msgs/Image encoding of every message: "32FC1" (latent) or "mono8" (puzzle).
- shape           [height, width] of every message: [2, L] (latent) or the grid (puzzle).
- layout          in words: which row holds mu and which log sigma^2, or what a grid value means.
- input           what the encoder looked at: height, width (the model's input in pixels), color_order ("rgb"),
                  range ([lo, hi] the pixels were scaled to; the decoder outputs the same range), crop_mode
                  (resize | center | letterbox | motion: which part of the camera frame became the input).
- telemetry       what `<output>/telemetry` carries beside each message (runtime/telemetry.py): topic ("telemetry",
                  beside the output), encoding ("32FC1", height 1), fields (names in message order), units (one per
                  field), and for latents the trust formula.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .telemetry import telemetry_info

FORMAT_VERSION = 1
LATENT_ENCODING = "32FC1"  # == runtime.messages.LATENT_ENCODING (the messages this info describes)
PUZZLE_ENCODING = "mono8"
LATENT_LAYOUT = ("sensor_msgs/Image 32FC1, height 2, width latent_dim, little endian: row 0 = mu (posterior mean; "
                 "the decoder's input, z = mu), row 1 = log sigma^2 (posterior log-variance, natural log)")
PUZZLE_LAYOUT = ("sensor_msgs/Image mono8, height grid[0], width grid[1], row-major over the image: each value is "
                 "the index (0..codes-1) of the codebook vector nearest that cell's feature; the decoder takes the "
                 "grid as integers")
REQUIRED = ("format_version", "kind", "model", "architecture", "precision", "encoder_sha256", "decoder_sha256",
            "encoding", "shape", "layout", "input")
INPUT_KEYS = ("height", "width", "color_order", "range", "crop_mode")


class InfoError(ValueError):
    """An info message that is not valid JSON, lacks a key, or has a value of the wrong kind."""


def model_info(bundle, crop_mode: str = "resize") -> dict[str, Any]:
    """The info object for latents that `bundle` (runtime.bundle.Bundle) encodes with `crop_mode`."""
    height, width = bundle.input_size
    info: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "kind": "puzzle" if bundle.is_vq else "latent",
        "model": bundle.name,
        "architecture": bundle.architecture,
        "precision": bundle.precision,
        "encoder_sha256": bundle.sha256(bundle.encoder_path.name),
        "decoder_sha256": bundle.sha256(bundle.decoder_path.name),
    }
    if bundle.is_vq:
        grid = list(bundle.latent_shape)
        info.update(grid=grid, codes=int(bundle.meta.get("num_codes", 10)), encoding=PUZZLE_ENCODING, shape=grid,
                    layout=PUZZLE_LAYOUT)
    else:
        dim = int(bundle.latent_shape[0])
        info.update(latent_dim=dim, encoding=LATENT_ENCODING, shape=[2, dim], layout=LATENT_LAYOUT)
    info["input"] = {"height": height, "width": width, "color_order": bundle.meta["input"].get("color_order", "rgb"),
                     "range": list(bundle.input_range), "crop_mode": crop_mode}
    info["telemetry"] = telemetry_info(info["kind"], int(bundle.meta.get("num_codes", 10)))
    return info


def info_json(info: dict[str, Any]) -> str:
    """Compact, key-sorted JSON: the same model and crop mode always give the same text (compared for changes)."""
    return json.dumps(info, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class LatentInfo:
    """A parsed, checked info object. `raw` keeps every key, known or not."""
    raw: dict

    @classmethod
    def parse(cls, text: str | bytes | dict) -> "LatentInfo":
        """From the std_msgs/String data (or an already-decoded dict); InfoError says what is wrong."""
        if isinstance(text, dict):
            raw = text
        else:
            try:
                raw = json.loads(text)
            except (TypeError, ValueError) as err:
                raise InfoError(f"info is not JSON: {err}") from None
        if not isinstance(raw, dict):
            raise InfoError(f"info must be a JSON object, got {type(raw).__name__}")
        missing = [key for key in REQUIRED if key not in raw]
        if missing:
            raise InfoError(f"info lacks keys {missing}")
        if not isinstance(raw["format_version"], int) or raw["format_version"] < 1:
            raise InfoError(f"format_version must be a positive int, got {raw['format_version']!r}")
        if raw["format_version"] > FORMAT_VERSION:
            raise InfoError(f"info format_version {raw['format_version']} is newer than this reader's "
                            f"{FORMAT_VERSION}; update sage_ros")
        kind = raw["kind"]
        if kind not in ("latent", "puzzle"):
            raise InfoError(f"kind must be 'latent' or 'puzzle', got {kind!r}")
        expected = {"latent": (LATENT_ENCODING, ("latent_dim",)), "puzzle": (PUZZLE_ENCODING, ("grid", "codes"))}
        encoding, keys = expected[kind]
        missing = [key for key in keys if key not in raw]
        if missing:
            raise InfoError(f"{kind} info lacks keys {missing}")
        if raw["encoding"] != encoding:
            raise InfoError(f"{kind} info has encoding {raw['encoding']!r}, expected {encoding!r}")
        shape = raw["shape"]
        if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(d, int) and d > 0 for d in shape)):
            raise InfoError(f"shape must be [height, width] of positive ints, got {shape!r}")
        if kind == "latent" and shape != [2, raw["latent_dim"]]:
            raise InfoError(f"latent info shape {shape} disagrees with latent_dim {raw['latent_dim']}")
        if kind == "puzzle" and (shape != raw["grid"] or not isinstance(raw["codes"], int)
                                 or not 1 <= raw["codes"] <= 256):
            raise InfoError(f"puzzle info: shape {shape} must equal grid {raw['grid']} and codes must be 1..256, "
                            f"got {raw['codes']!r}")
        spec = raw["input"]
        if not isinstance(spec, dict) or any(key not in spec for key in INPUT_KEYS):
            raise InfoError(f"info input must hold {list(INPUT_KEYS)}, got {spec!r}")
        for key in ("encoder_sha256", "decoder_sha256"):
            value = raw[key]
            if not (isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)):
                raise InfoError(f"{key} must be 64 lowercase hex digits, got {value!r}")
        return cls(raw)

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    @property
    def kind(self) -> str:
        return self.raw["kind"]

    @property
    def is_puzzle(self) -> bool:
        return self.kind == "puzzle"

    @property
    def model(self) -> str:
        return self.raw["model"]

    @property
    def encoding(self) -> str:
        return self.raw["encoding"]

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.raw["shape"])

    @property
    def input_range(self) -> tuple[float, float]:
        lo, hi = self.raw["input"]["range"]
        return float(lo), float(hi)

    @property
    def identity(self) -> tuple[str, str, str]:
        """What fixes how the latents decode: (model, encoder_sha256, decoder_sha256)."""
        return self.raw["model"], self.raw["encoder_sha256"], self.raw["decoder_sha256"]

    def to_json(self) -> str:
        return info_json(self.raw)

    def summary(self) -> str:
        size = f"grid {self.raw['grid']}" if self.is_puzzle else f"L={self.raw['latent_dim']}"
        return (f"{self.model} ({self.raw['architecture']}, {self.raw['precision']}, {size}, decoder "
                f"{self.raw['decoder_sha256'][:12]})")
