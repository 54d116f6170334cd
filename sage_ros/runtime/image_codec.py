"""sensor_msgs/Image and CompressedImage <-> numpy, without rclpy or cv_bridge (which is not on PyPI).

Duck-typed on the message fields (height, width, encoding, is_bigendian, step, data / format, data), so it works
for rclpy messages (data is array.array), rosbags messages (data is np.ndarray) and plain objects.

- image_to_numpy: zero-copy `np.frombuffer` view of msg.data (a copy only when the byte order differs from the
  machine's); step padding is skipped with a strided view. 1-channel encodings give H x W, others H x W x C;
  yuv422 (UYVY) / yuv422_yuy2 give the raw H x W x 2 bytes (to_rgb8 converts them).
- numpy_to_image: fills msg.data from an array.array (one memcpy), never a Python list (39 ms per VGA frame).
- decode_compressed: jpeg/png -> RGB uint8, with libjpeg's reduced-resolution decoding (IMREAD_REDUCED_COLOR_2/4/8)
  when `min_size` says the consumer needs far fewer pixels than the frame has.
- Every malformed message raises ImageConversionError (a ValueError) with the reason; nodes count them.
"""
from __future__ import annotations

import array
import sys
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np


class ImageConversionError(ValueError):
    """A message that cannot be converted: wrong data length, zero size, unknown encoding, bad step, NaN, ..."""


# encoding -> (numpy dtype, channels). Aliases follow sensor_msgs/image_encodings.hpp.
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3), "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4), "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1), "8UC1": (np.dtype(np.uint8), 1),
    "8UC3": (np.dtype(np.uint8), 3), "8UC4": (np.dtype(np.uint8), 4),
    "mono16": (np.dtype(np.uint16), 1), "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
    "yuv422": (np.dtype(np.uint8), 2), "uyvy": (np.dtype(np.uint8), 2),
    "yuv422_yuy2": (np.dtype(np.uint8), 2), "yuyv": (np.dtype(np.uint8), 2),
}
YUV_ENCODINGS = {"yuv422": cv2.COLOR_YUV2RGB_UYVY, "uyvy": cv2.COLOR_YUV2RGB_UYVY,
                 "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2, "yuyv": cv2.COLOR_YUV2RGB_YUY2}
FLOAT_ENCODINGS = {"32FC1"}
_NATIVE_BIG_ENDIAN = sys.byteorder == "big"


def bytes_per_pixel(encoding: str) -> int:
    dtype, channels = _lookup(encoding)
    return dtype.itemsize * channels


def _lookup(encoding: str) -> tuple[np.dtype, int]:
    try:
        return ENCODINGS[encoding]
    except (KeyError, TypeError):
        raise ImageConversionError(f"unsupported encoding {encoding!r}; supported: {sorted(ENCODINGS)}") from None


def _as_uint8_buffer(data: Any) -> np.ndarray:
    """A flat uint8 view of msg.data without copying (bytes, bytearray, array.array, memoryview, ndarray)."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    if isinstance(data, (list, tuple)):  # tolerated when reading (some test code builds lists), at a copy's cost
        return np.asarray(data, dtype=np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError) as err:
        raise ImageConversionError(f"message data of type {type(data).__name__} is not a byte buffer") from err


def image_to_numpy(msg: Any, *, check_finite: bool = False) -> np.ndarray:
    """sensor_msgs/Image -> numpy (H x W or H x W x C, native byte order), usually a view of msg.data.

    The view shares memory with the message: copy it if you keep it longer than the message or write into it.
    check_finite=True rejects float images holding NaN or inf.
    """
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    encoding = msg.encoding
    dtype, channels = _lookup(encoding)
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"zero-size image ({width}x{height}, {encoding})")
    if encoding in YUV_ENCODINGS and width % 2:
        raise ImageConversionError(f"{encoding} packs two pixels per 4 bytes; width {width} is odd")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(f"step {step} < width*bytes_per_pixel = {width}*{channels * dtype.itemsize}")
    buffer = _as_uint8_buffer(msg.data)
    if buffer.size != step * height:
        raise ImageConversionError(f"data has {buffer.size} bytes, expected step*height = {step}*{height} = "
                                   f"{step * height} ({width}x{height} {encoding})")
    rows = buffer.reshape(height, step)[:, :row_bytes]
    big_endian = bool(msg.is_bigendian) and dtype.itemsize > 1
    wire_dtype = dtype.newbyteorder(">" if big_endian else "<")
    image = rows.view(wire_dtype)
    if wire_dtype.byteorder not in ("=", "|") and (wire_dtype.byteorder == ">") != _NATIVE_BIG_ENDIAN:
        image = image.astype(dtype)  # byte swap: the only copy on this path
    image = image.reshape(height, width, channels) if channels > 1 else image.reshape(height, width)
    if check_finite and encoding in FLOAT_ENCODINGS and not np.isfinite(image).all():
        raise ImageConversionError(f"{encoding} image holds NaN or inf")
    return image


@dataclass
class ImageFields:
    """What numpy_to_image returns when sensor_msgs is not importable: the same fields as sensor_msgs/Image."""
    header: Any = None
    height: int = 0
    width: int = 0
    encoding: str = ""
    is_bigendian: int = 0
    step: int = 0
    data: Any = field(default_factory=lambda: array.array("B"))


def _new_image_message() -> Any:
    try:
        from sensor_msgs.msg import Image  # a rosidl message module: does not import rclpy
    except ImportError:
        return ImageFields()
    return Image()


def numpy_to_image(image: np.ndarray, encoding: str, header: Any = None, msg: Any = None, *,
                   step: int | None = None, is_bigendian: bool = False) -> Any:
    """numpy -> sensor_msgs/Image (or fills `msg` in place and returns it).

    `image` is H x W (1-channel encodings) or H x W x C with the encoding's dtype and channel count. `step` pads
    each row (default: packed rows); `is_bigendian` writes multi-byte pixels big-endian.
    """
    dtype, channels = _lookup(encoding)
    image = np.asarray(image)
    if image.ndim == 2 and channels == 1:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] != channels:
        raise ImageConversionError(f"{encoding} needs H x W{'' if channels == 1 else f' x {channels}'}, "
                                   f"got shape {image.shape}")
    if image.dtype != dtype:
        raise ImageConversionError(f"{encoding} needs dtype {dtype}, got {image.dtype}")
    height, width = image.shape[:2]
    if height == 0 or width == 0:
        raise ImageConversionError(f"zero-size image {image.shape}")
    if encoding in YUV_ENCODINGS and width % 2:
        raise ImageConversionError(f"{encoding} needs an even width, got {width}")
    row_bytes = width * channels * dtype.itemsize
    step = row_bytes if step is None else int(step)
    if step < row_bytes:
        raise ImageConversionError(f"step {step} < width*bytes_per_pixel = {row_bytes}")
    wire = image.astype(dtype.newbyteorder(">" if is_bigendian else "<"), copy=False)
    if step == row_bytes:
        payload = np.ascontiguousarray(wire).reshape(-1).view(np.uint8)
    else:
        padded = np.zeros((height, step), np.uint8)
        padded[:, :row_bytes] = np.ascontiguousarray(wire).reshape(height, -1).view(np.uint8)
        payload = padded.reshape(-1)
    msg = _new_image_message() if msg is None else msg
    if header is not None:
        msg.header = header
    msg.height, msg.width, msg.encoding = height, width, encoding
    msg.is_bigendian = int(bool(is_bigendian) and dtype.itemsize > 1)
    msg.step = step
    msg.data = _to_message_bytes(payload, getattr(msg, "data", None))
    return msg


def _to_message_bytes(payload: np.ndarray, current: Any) -> Any:
    """rosbags messages hold np.ndarray; rclpy ones array.array('B') (filled in one memcpy, never via a list)."""
    if isinstance(current, np.ndarray):
        return payload.copy()
    data = array.array("B")
    data.frombytes(memoryview(payload))
    return data


def to_rgb8(image: np.ndarray, encoding: str) -> np.ndarray:
    """Any supported encoding's array (as image_to_numpy returns it) -> H x W x 3 uint8 RGB for the model path.

    mono16/16UC1 keep the high byte; 32FC1 is taken as intensity in [0, 1] (clipped) and NaN/inf raise.
    rgb8 input is returned as is (no copy).
    """
    _lookup(encoding)
    if encoding in ("rgb8", "8UC3"):
        return image
    if encoding == "bgr8":
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if encoding in ("rgba8", "8UC4"):
        return cv2.cvtColor(image, cv2.COLOR_RGBA2RGB)
    if encoding == "bgra8":
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    if encoding in YUV_ENCODINGS:
        return cv2.cvtColor(np.ascontiguousarray(image), YUV_ENCODINGS[encoding])
    if encoding in ("mono8", "8UC1"):
        gray = image
    elif encoding in ("mono16", "16UC1"):
        gray = (image >> 8).astype(np.uint8)
    else:  # 32FC1
        if not np.isfinite(image).all():
            raise ImageConversionError(f"{encoding} image holds NaN or inf")
        gray = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(gray), cv2.COLOR_GRAY2RGB)


def image_msg_to_rgb8(msg: Any) -> np.ndarray:
    """sensor_msgs/Image -> H x W x 3 uint8 RGB (NaN/inf in float images raise)."""
    return to_rgb8(image_to_numpy(msg, check_finite=True), msg.encoding)


# --- CompressedImage ------------------------------------------------------------------------------------------

_REDUCED_FLAGS = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


def compressed_kind(data: np.ndarray, fmt: str = "") -> str:
    """'jpeg' or 'png' from the magic bytes (the format string of image_transport varies: 'jpeg',
    'rgb8; jpeg compressed bgr8', ...); a declared format that disagrees, or compressedDepth, raises."""
    if "compresseddepth" in (fmt or "").lower():
        raise ImageConversionError(f"compressedDepth images are not supported (format {fmt!r})")
    if data.size >= 3 and data[0] == 0xFF and data[1] == 0xD8 and data[2] == 0xFF:
        kind = "jpeg"
    elif data.size >= 8 and bytes(data[:8]) == b"\x89PNG\r\n\x1a\n":
        kind = "png"
    else:
        raise ImageConversionError(f"compressed data ({data.size} bytes, format {fmt!r}) is neither JPEG nor PNG")
    declared = (fmt or "").lower()
    if declared and not any(word in declared for word in ("jpeg", "jpg", "png")):
        raise ImageConversionError(f"unsupported compressed format {fmt!r}")
    return kind


def jpeg_size(data: np.ndarray) -> tuple[int, int] | None:
    """(height, width) from a JPEG's SOF marker, or None. Hand-written because OpenCV's Python API has no
    header-only read, and we need the size before decoding to pick a reduction factor."""
    raw = memoryview(data)
    i, n = 2, len(raw)
    while i + 9 < n:
        if raw[i] != 0xFF:
            return None
        marker = raw[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        length = (raw[i + 2] << 8) | raw[i + 3]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn
            return (raw[i + 5] << 8) | raw[i + 6], (raw[i + 7] << 8) | raw[i + 8]
        i += 2 + length
    return None


def reduction_factor(frame_size: tuple[int, int], min_size: int | tuple[int, int] | None) -> int:
    """Largest of 8, 4, 2 (else 1) that keeps the decoded frame at least `min_size` (h, w) in both axes."""
    if min_size is None:
        return 1
    min_h, min_w = (min_size, min_size) if isinstance(min_size, int) else min_size
    height, width = frame_size
    for factor, _ in _REDUCED_FLAGS:
        if -(-height // factor) >= min_h and -(-width // factor) >= min_w:  # libjpeg rounds the scaled size up
            return factor
    return 1


def decode_compressed(msg: Any, min_size: int | tuple[int, int] | None = None) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png) -> H x W x 3 uint8 RGB.

    min_size (pixels, int or (h, w)): the smallest frame the consumer needs, e.g. the crop the model takes.
    JPEGs are then decoded at 1/2, 1/4 or 1/8 scale inside libjpeg (IDCT scaling, several times faster) when the
    reduced frame still covers min_size. PNGs always decode at full size (OpenCV would decode fully and resize).
    """
    data = _as_uint8_buffer(msg.data)
    if data.size == 0:
        raise ImageConversionError("compressed image has no data")
    kind = compressed_kind(data, getattr(msg, "format", ""))
    flag = cv2.IMREAD_COLOR
    if kind == "jpeg" and min_size is not None:
        size = jpeg_size(data)
        factor = 1 if size is None else reduction_factor(size, min_size)
        flag = dict(_REDUCED_FLAGS).get(factor, cv2.IMREAD_COLOR)
    bgr = cv2.imdecode(data, flag)
    if bgr is None or bgr.size == 0:
        raise ImageConversionError(f"{kind} data ({data.size} bytes) could not be decoded")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def encode_compressed(image_rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> bytes:
    """H x W x 3 uint8 RGB -> jpeg/png bytes (for tests, bags and the reconstruction topic)."""
    ext = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png"}.get(fmt)
    if ext is None:
        raise ImageConversionError(f"cannot encode format {fmt!r}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if ext == ".jpg" else []
    ok, encoded = cv2.imencode(ext, cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ImageConversionError(f"cv2.imencode failed for {image_rgb.shape} {image_rgb.dtype}")
    return encoded.tobytes()
