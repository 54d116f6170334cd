"""`<output>/info`: the JSON that says which model made the latents on `latent` / `puzzle`. No rclpy, no torch.

The encoder node publishes `model_info(bundle, crop_mode)` as a std_msgs/String (reliable, transient-local,
depth 1: latched) beside every output topic when it activates and again whenever the bundle or the crop mode
changes, always before the first latent that the new model made. `sage-ros bag encode` writes the same
object into its bag. Consumers parse it with `LatentInfo.parse` and check messages against it (consumer.py).

Keys (format_version 2; a consumer must ignore keys it does not know):
- format_version  int, 2. Bumped only when a key or the message layout changes meaning (2: every message carries
                  its model's fingerprint in identity rows below the data; version 1 messages had none).
- kind            "latent" (TinyVAE family: Gaussian latents) or "puzzle" (VisionPuzzleVAE: a grid of codes).
- model           the bundle's name (bundle.json "name").
- architecture    TinyVAE | TinyVAE32 | VisionPuzzleVAE.
- precision       fp32 | fp16 | int8 | int4 (the bundle's weights; messages are float32 / uint8 regardless).
- encoder_sha256  sha256 of the bundle's encoder.onnx (bundle.json "files"): which exact graph encoded.
- decoder_sha256  sha256 of its decoder.onnx: which decoder turns these latents back into images.
- fingerprint     12 hex digits: the first 48 bits of sha256("model\nencoder_sha256\ndecoder_sha256"). Every
                  message carries it (below), so a consumer can tell which model made each latent however late
                  the info arrives; sidecars (e.g. <output>/telemetry) carry the same string.
- identity_rows   how many rows below the data hold the identity (1 for every shipped model).
- latent_dim      (kind "latent") L, the size of mu and of log sigma^2.
- grid, codes     (kind "puzzle") [rows, cols] of the code grid (30 x 30) and the codebook size (values 0..codes-1).
- encoding        the sensor_msgs/Image encoding of every message: "32FC1" (latent) or "mono8" (puzzle).
- shape           [height, width] of every message, identity rows included: [2 + identity_rows, L] (latent) or
                  [grid rows + identity_rows, grid cols] (puzzle).
- layout          in words: which row holds mu and which log sigma^2, or what a grid value means, and the identity.
- input           what the encoder looked at: height, width (the model's input in pixels), color_order ("rgb"),
                  range ([lo, hi] the pixels were scaled to; the decoder outputs the same range), crop_mode
                  (resize | center | letterbox | motion: which part of the camera frame became the input).
- telemetry       what `<output>/telemetry` carries beside each message (runtime/telemetry.py): topic ("telemetry",
                  beside the output), encoding ("32FC1", height 1), layout, fields (names in message order), units
                  (one per field), and for latents the trust formula.

The identity rows (messages.py writes and reads them): for `latent` (32FC1) the values 21319 ("SG"), then the
fingerprint as three 16-bit integers (0..65535, exact in float32), high word first, then zeros, row-major over
identity_rows x L cells; for `puzzle` (mono8) the bytes 0x53 0x47 ("SG") then the six fingerprint bytes, then
zeros, row-major over identity_rows x cols. Stock tools still read the message as a 32FC1 / mono8 image (the identity
is one more row). Version 1 infos (bags recorded before) are still read; their messages have no identity rows.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from .safe_json import JSONLimitError, loads_limited
from .telemetry import telemetry_info

FORMAT_VERSION = 2
MAX_INFO_BYTES = 64 * 1024  # a real info is ~1 KB; anything far larger is refused unparsed
MAX_INFO_DEPTH = 16         # a real info nests 3 deep
IDENTITY_MAGIC = 0x5347     # "SG": marks the identity rows
LATENT_IDENTITY_CELLS = 4   # magic + three 16-bit words of the 48-bit fingerprint
PUZZLE_IDENTITY_CELLS = 8   # "S", "G" + six fingerprint bytes
LATENT_ENCODING = "32FC1"  # == runtime.messages.LATENT_ENCODING (the messages this info describes)
PUZZLE_ENCODING = "mono8"
LATENT_LAYOUT = ("sensor_msgs/Image 32FC1, width latent_dim, little endian: row 0 = mu (posterior mean; "
                 "the decoder's input, z = mu), row 1 = log sigma^2 (posterior log-variance, natural log), then "
                 "identity_rows rows: 21319, the fingerprint as three 16-bit integers (high first), zeros")
PUZZLE_LAYOUT = ("sensor_msgs/Image mono8, width grid[1]: the first grid[0] rows, row-major, each value the index "
                 "(0..codes-1) of the codebook vector nearest that cell's feature (the decoder takes the grid as "
                 "integers); then identity_rows rows: bytes 0x53 0x47, the six fingerprint bytes, zeros")
REQUIRED = ("format_version", "kind", "model", "architecture", "precision", "encoder_sha256", "decoder_sha256",
            "encoding", "shape", "layout", "input")
INPUT_KEYS = ("height", "width", "color_order", "range", "crop_mode")


class InfoError(ValueError):
    """An info message that is not valid JSON, lacks a key, or has a value of the wrong kind."""


def fingerprint(model: str, encoder_sha256: str, decoder_sha256: str) -> str:
    """The 12-hex-digit model fingerprint every message carries (see the module text)."""
    return hashlib.sha256(f"{model}\n{encoder_sha256}\n{decoder_sha256}".encode()).hexdigest()[:12]


def identity_rows(kind: str, width: int) -> int:
    """Rows below the data that hold the identity in a message of `width` columns."""
    cells = PUZZLE_IDENTITY_CELLS if kind == "puzzle" else LATENT_IDENTITY_CELLS
    return -(-cells // max(int(width), 1))


def bundle_fingerprint(bundle) -> str:
    return fingerprint(bundle.name, bundle.sha256(bundle.encoder_path.name), bundle.sha256(bundle.decoder_path.name))


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
        "fingerprint": bundle_fingerprint(bundle),
    }
    if bundle.is_vq:
        grid = list(bundle.latent_shape)
        rows = identity_rows("puzzle", grid[1])
        info.update(grid=grid, codes=int(bundle.meta.get("num_codes", 10)), encoding=PUZZLE_ENCODING,
                    shape=[grid[0] + rows, grid[1]], identity_rows=rows, layout=PUZZLE_LAYOUT)
    else:
        dim = int(bundle.latent_shape[0])
        rows = identity_rows("latent", dim)
        info.update(latent_dim=dim, encoding=LATENT_ENCODING, shape=[2 + rows, dim], identity_rows=rows,
                    layout=LATENT_LAYOUT)
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
            try:  # untrusted: limited in size and depth before parsing
                raw = loads_limited(text, max_bytes=MAX_INFO_BYTES, max_depth=MAX_INFO_DEPTH, what="info")
            except JSONLimitError as err:
                raise InfoError(f"info is not JSON: {err}" if err.syntax else str(err)) from None
        if not isinstance(raw, dict):
            raise InfoError(f"info must be a JSON object, got {type(raw).__name__}")
        missing = [key for key in REQUIRED if key not in raw]
        if missing:
            raise InfoError(f"info lacks keys {missing}")
        if type(raw["format_version"]) is not int or raw["format_version"] < 1:
            raise InfoError(f"format_version must be a positive int, got {raw['format_version']!r}")
        if raw["format_version"] > FORMAT_VERSION:
            raise InfoError(f"info format_version {raw['format_version']} is newer than this reader's "
                            f"{FORMAT_VERSION}; update sage_ros")
        kind = raw["kind"]
        if kind not in ("latent", "puzzle"):
            raise InfoError(f"kind must be 'latent' or 'puzzle', got {kind!r}")
        expected = {"latent": (LATENT_ENCODING, ("latent_dim",)), "puzzle": (PUZZLE_ENCODING, ("grid", "codes"))}
        encoding, keys = expected[kind]
        if raw["format_version"] >= 2:
            keys = (*keys, "fingerprint", "identity_rows")
        missing = [key for key in keys if key not in raw]
        if missing:
            raise InfoError(f"{kind} info lacks keys {missing}")
        for key in ("model", "architecture", "precision"):
            if not isinstance(raw[key], str):
                raise InfoError(f"{key} must be a string, got {raw[key]!r}")
        if raw["encoding"] != encoding:
            raise InfoError(f"{kind} info has encoding {raw['encoding']!r}, expected {encoding!r}")
        shape = raw["shape"]
        if not (isinstance(shape, list) and len(shape) == 2 and all(type(d) is int and 0 < d <= 65536 for d in shape)):
            raise InfoError(f"shape must be [height, width] of ints in 1..65536, got {shape!r}")
        rows = raw.get("identity_rows", 0) if raw["format_version"] >= 2 else 0
        if raw["format_version"] >= 2:
            if not (isinstance(raw["fingerprint"], str) and len(raw["fingerprint"]) == 12
                    and all(c in "0123456789abcdef" for c in raw["fingerprint"])):
                raise InfoError(f"fingerprint must be 12 lowercase hex digits, got {raw['fingerprint']!r}")
            if type(rows) is not int or rows != identity_rows(kind, shape[1]):
                raise InfoError(f"identity_rows must be {identity_rows(kind, shape[1])} for width {shape[1]}, "
                                f"got {rows!r}")
        if kind == "latent" and (type(raw["latent_dim"]) is not int or shape != [2 + rows, raw["latent_dim"]]):
            raise InfoError(f"latent info shape {shape} disagrees with latent_dim {raw['latent_dim']!r} "
                            f"(+ {rows} identity rows)")
        grid = raw.get("grid")
        if kind == "puzzle" and not (
                isinstance(grid, list) and len(grid) == 2 and all(type(d) is int and d > 0 for d in grid)
                and shape == [grid[0] + rows, grid[1]] and type(raw["codes"]) is int and 1 <= raw["codes"] <= 256):
            raise InfoError(f"puzzle info: shape {shape} must equal grid {grid!r} (+ {rows} identity rows) and "
                            f"codes must be 1..256, got {raw['codes']!r}")
        spec = raw["input"]
        if not isinstance(spec, dict) or any(key not in spec for key in INPUT_KEYS):
            raise InfoError(f"info input must hold {list(INPUT_KEYS)}, got {spec!r}")
        value_range = spec["range"]
        if not (isinstance(value_range, list) and len(value_range) == 2
                and all(type(v) in (int, float) and abs(v) < 1e6 for v in value_range)
                and value_range[0] < value_range[1]):
            raise InfoError(f"info input.range must be [lo, hi] numbers with lo < hi, got {value_range!r}")
        for key in ("encoder_sha256", "decoder_sha256"):
            value = raw[key]
            if not (isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)):
                raise InfoError(f"{key} must be 64 lowercase hex digits, got {value!r}")
        if raw["format_version"] >= 2 and raw["fingerprint"] != fingerprint(
                raw["model"], raw["encoder_sha256"], raw["decoder_sha256"]):
            raise InfoError(f"fingerprint {raw['fingerprint']} does not belong to model {raw['model']!r} with these "
                            "checksums")
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
    def identity_rows(self) -> int:
        """Rows below the data holding the model's identity (0 for a format_version 1 info)."""
        return int(self.raw.get("identity_rows", 0)) if self.raw["format_version"] >= 2 else 0

    @property
    def fingerprint(self) -> str | None:
        """The fingerprint its messages carry (None for format_version 1: they carry none)."""
        return self.raw["fingerprint"] if self.raw["format_version"] >= 2 else None

    @property
    def data_shape(self) -> tuple[int, int]:
        """[height, width] of the data part of every message (identity rows excluded)."""
        height, width = self.raw["shape"]
        return height - self.identity_rows, width

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
