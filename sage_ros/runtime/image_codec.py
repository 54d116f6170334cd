"""sensor_msgs/Image and CompressedImage <-> numpy, without rclpy or cv_bridge (which is not on PyPI).

Duck-typed on the message fields (height, width, encoding, is_bigendian, step, data / format, data), so it works
for rclpy messages (data is array.array), rosbags messages (data is np.ndarray) and plain objects.

- image_to_numpy: zero-copy `np.frombuffer` view of msg.data (a copy only when the byte order differs from the
  machine's); step padding is skipped with a strided view. 1-channel encodings give H x W, others H x W x C;
  yuv422 (UYVY) / yuv422_yuy2 give the raw H x W x 2 bytes (to_rgb8 converts them).
- numpy_to_image: fills msg.data from an array.array (one memcpy), never a Python list (39 ms per VGA frame).
- to_rgb8: cv_bridge's `toCvCopy(msg, "rgb8")` pixel for pixel for every encoding cv_bridge converts to rgb8
  (its conversion table in cv_bridge.cpp: colour conversion first, then a depth change by convertTo with scale
  255/65535, which rounds half to even); see to_rgb8 for the encodings cv_bridge refuses and what we do instead.
- check_image / check_compressed: cheap checks on the message fields and the PNG/JPEG header only (no pixel
  decoded), so a node can refuse a malformed or oversized frame in its subscription callback.
- decode_compressed: jpeg/png -> RGB uint8, with libjpeg's reduced-resolution decoding (1/2, 1/4, 1/8) when
  `min_size` says the consumer needs far fewer pixels than the frame has; the header's size is checked against
  `max_pixels` before anything is decoded (decompression bombs). JPEGs decode through simplejpeg (libjpeg-turbo)
  in strict mode, which turns libjpeg's "Corrupt JPEG data" warnings into errors; cv2.imdecode would return a
  picture for them. JPEG has no checksum, so corruption libjpeg cannot see (a flipped bit that still decodes)
  stays undetectable. EXIF orientation is ignored, as cv_bridge (IMREAD_UNCHANGED) ignores it.
- Every malformed message raises ImageConversionError (a ValueError) with the reason; nodes count them.
"""
from __future__ import annotations

import array
import sys
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from .settings import DEFAULT_MAX_PIXELS  # re-exported: the codec's default bound

try:  # strict JPEG decoding (libjpeg-turbo warnings as errors); optional, OpenCV is the fallback
    import simplejpeg as _simplejpeg
except ImportError:  # pragma: no cover - requirements.txt installs it
    _simplejpeg = None
_SIMPLEJPEG_COLORSPACES = ("Gray", "YCbCr", "RGB")  # what libjpeg-turbo can turn into RGB


class ImageConversionError(ValueError):
    """A message that cannot be converted: wrong data length, zero size, unknown encoding, bad step, NaN, ..."""


# encoding -> (numpy dtype, channels). Aliases follow sensor_msgs/image_encodings.hpp.
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3), "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4), "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1), "8UC1": (np.dtype(np.uint8), 1),
    "8UC3": (np.dtype(np.uint8), 3), "8UC4": (np.dtype(np.uint8), 4),
    "mono16": (np.dtype(np.uint16), 1), "16UC1": (np.dtype(np.uint16), 1),
    "rgb16": (np.dtype(np.uint16), 3), "bgr16": (np.dtype(np.uint16), 3),
    "rgba16": (np.dtype(np.uint16), 4), "bgra16": (np.dtype(np.uint16), 4),
    **{f"bayer_{p}8": (np.dtype(np.uint8), 1) for p in ("rggb", "bggr", "gbrg", "grbg")},
    **{f"bayer_{p}16": (np.dtype(np.uint16), 1) for p in ("rggb", "bggr", "gbrg", "grbg")},
    "32FC1": (np.dtype(np.float32), 1),
    "yuv422": (np.dtype(np.uint8), 2), "uyvy": (np.dtype(np.uint8), 2),
    "yuv422_yuy2": (np.dtype(np.uint8), 2), "yuyv": (np.dtype(np.uint8), 2),
}
YUV_ENCODINGS = {"yuv422": cv2.COLOR_YUV2RGB_UYVY, "uyvy": cv2.COLOR_YUV2RGB_UYVY,
                 "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2, "yuyv": cv2.COLOR_YUV2RGB_YUY2}
FLOAT_ENCODINGS = {"32FC1"}
# cv_bridge.cpp getConversionCodes(): the OpenCV code for <encoding> -> RGB. Bayer names follow OpenCV's own
# (shifted) pattern naming, so bayer_rggb is COLOR_BayerBG2RGB, exactly as cv_bridge maps them.
_TO_RGB = {
    "bgr8": cv2.COLOR_BGR2RGB, "bgr16": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB,
    "rgba16": cv2.COLOR_RGBA2RGB, "bgra8": cv2.COLOR_BGRA2RGB, "bgra16": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB, "mono16": cv2.COLOR_GRAY2RGB,
    **{f"bayer_{p}{d}": code for p, code in (("rggb", cv2.COLOR_BayerBG2RGB), ("bggr", cv2.COLOR_BayerRG2RGB),
                                            ("gbrg", cv2.COLOR_BayerGR2RGB), ("grbg", cv2.COLOR_BayerGB2RGB))
       for d in (8, 16)},
}
# Encodings cv_bridge's toCvCopy(.., "rgb8") refuses (no colour information); treated as cv_bridge's
# cvtColorForDisplay treats them: 8UC1 as mono8, 16UC1 as mono16, 32FC1 as intensity with min 0 / max 1
# (convertTo(CV_8U, 255): clipped, rounded half to even). 8UC3 / 8UC4 are taken as rgb8 / rgba8 (our choice).
_ALIASES = {"8UC1": "mono8", "8UC3": "rgb8", "8UC4": "rgba8", "16UC1": "mono16"}
_SCALE_16_TO_8 = np.float32(255.0 / 65535.0)  # OpenCV's convertTo computes 16U -> 8U in float32
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

    The pixels are cv_bridge's `toCvCopy(msg, "rgb8")`: the colour conversion of cv_bridge's table at the source
    depth (Bayer demosaicing included), then 16-bit -> 8-bit by convertTo with scale 255/65535 (rounded half to
    even, as cv::saturate_cast rounds). 8UC1/16UC1/32FC1/8UC3/8UC4 follow _ALIASES (cv_bridge's toCvCopy refuses
    them); NaN/inf in 32FC1 raise. rgb8 input is returned as is (no copy).
    """
    _lookup(encoding)
    encoding = _ALIASES.get(encoding, encoding)
    if encoding == "rgb8":
        return image
    if encoding in YUV_ENCODINGS:
        return cv2.cvtColor(np.ascontiguousarray(image), YUV_ENCODINGS[encoding])
    if encoding == "32FC1":
        if not np.isfinite(image).all():
            raise ImageConversionError(f"{encoding} image holds NaN or inf")
        gray = np.rint(np.clip(image, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)
        return cv2.cvtColor(np.ascontiguousarray(gray), cv2.COLOR_GRAY2RGB)
    code = _TO_RGB.get(encoding)
    rgb = image if code is None else cv2.cvtColor(np.ascontiguousarray(image), code)  # rgb16: depth change only
    if rgb.dtype == np.uint16:
        rgb = np.rint(rgb.astype(np.float32) * _SCALE_16_TO_8).astype(np.uint8)
    return rgb


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




def _check_pixels(height: int, width: int, max_pixels: int | None, what: str) -> None:
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"{what} declares a zero size ({width}x{height})")
    if max_pixels is not None and height * width > max_pixels:
        raise ImageConversionError(f"{what} declares {width}x{height} = {height * width} pixels, more than "
                                   f"max_input_pixels = {max_pixels}; refused before decoding")


def png_size(data: np.ndarray) -> tuple[int, int] | None:
    """(height, width) from a PNG's IHDR chunk (which the PNG spec puts first), or None."""
    if data.size < 24 or bytes(data[12:16]) != b"IHDR":
        return None
    header = bytes(data[16:24])
    return int.from_bytes(header[4:8], "big"), int.from_bytes(header[0:4], "big")


def compressed_size(data: np.ndarray, kind: str) -> tuple[int, int]:
    """(height, width) a PNG/JPEG declares in its header; ImageConversionError when there is no usable header."""
    if kind == "jpeg" and _simplejpeg is not None:  # libjpeg's own header reader: the decoder sees the same size
        try:
            height, width = _simplejpeg.decode_jpeg_header(data)[:2]
        except ValueError as err:
            raise ImageConversionError(f"jpeg header ({data.size} bytes) unreadable: {err}") from None
        return int(height), int(width)
    size = png_size(data) if kind == "png" else jpeg_size(data)
    if size is None:
        raise ImageConversionError(f"{kind} data ({data.size} bytes) has no readable "
                                   f"{'IHDR' if kind == 'png' else 'SOF'} header")
    return size


def check_image(msg: Any, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
    """Cheap validation of a sensor_msgs/Image (fields and data length only, no pixel touched): exactly the checks
    image_to_numpy makes, plus the size limit. Raises ImageConversionError."""
    try:
        height, width, step = int(msg.height), int(msg.width), int(msg.step)
    except (TypeError, ValueError, AttributeError) as err:
        raise ImageConversionError(f"image fields unusable: {err}") from None
    encoding = msg.encoding
    dtype, channels = _lookup(encoding)
    _check_pixels(height, width, max_pixels, f"{encoding} image")
    if encoding in YUV_ENCODINGS and width % 2:
        raise ImageConversionError(f"{encoding} packs two pixels per 4 bytes; width {width} is odd")
    if step < width * channels * dtype.itemsize:
        raise ImageConversionError(f"step {step} < width*bytes_per_pixel = {width}*{channels * dtype.itemsize}")
    size = len(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data.nbytes
    if size != step * height:
        raise ImageConversionError(f"data has {size} bytes, expected step*height = {step}*{height} = "
                                   f"{step * height} ({width}x{height} {encoding})")


def check_compressed(msg: Any, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[str, tuple[int, int]]:
    """Cheap validation of a sensor_msgs/CompressedImage from its magic bytes and header (nothing decoded):
    returns (kind, (height, width)); raises ImageConversionError for unknown formats, unreadable headers, zero
    or oversized declared sizes."""
    data = _as_uint8_buffer(msg.data)
    if data.size == 0:
        raise ImageConversionError("compressed image has no data")
    kind = compressed_kind(data, getattr(msg, "format", ""))
    size = compressed_size(data, kind)
    _check_pixels(*size, max_pixels, kind)
    return kind, size


def _jpeg_colorspace(data: np.ndarray) -> str | None:
    if _simplejpeg is None:
        return None
    try:
        return _simplejpeg.decode_jpeg_header(data)[2]
    except ValueError as err:
        raise ImageConversionError(f"jpeg header: {err}") from None


def decode_compressed(msg: Any, min_size: int | tuple[int, int] | None = None,
                      max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png) -> H x W x 3 uint8 RGB.

    The declared size is checked first (check_compressed: zero or more than `max_pixels` pixels raise before any
    decoding). min_size (pixels, int or (h, w)): the smallest frame the consumer needs, e.g. the crop the model
    takes. JPEGs are then decoded at 1/2, 1/4 or 1/8 scale inside libjpeg (IDCT scaling, several times faster)
    when the reduced frame still covers min_size. PNGs always decode at full size (OpenCV would decode fully and
    resize). JPEG decoding is strict (simplejpeg): libjpeg's corrupt-data warnings raise. EXIF orientation is
    ignored (cv_bridge decodes with IMREAD_UNCHANGED, which ignores it).
    """
    kind, size = check_compressed(msg, max_pixels)
    data = _as_uint8_buffer(msg.data)
    factor = reduction_factor(size, min_size) if kind == "jpeg" else 1
    if kind == "jpeg" and _jpeg_colorspace(data) in _SIMPLEJPEG_COLORSPACES:
        height, width = size
        try:  # strict=True: "Corrupt JPEG data: ..." warnings raise ValueError instead of yielding a picture
            return _simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True, min_factor=factor,
                                           min_height=-(-height // factor), min_width=-(-width // factor))
        except ValueError as err:
            raise ImageConversionError(f"jpeg data ({data.size} bytes) is corrupt: {err}") from None
    # PNG, CMYK/YCCK JPEGs (libjpeg-turbo cannot give RGB for them) and machines without simplejpeg: OpenCV,
    # which decodes what it can of a corrupt JPEG without saying so.
    flag = dict(_REDUCED_FLAGS).get(factor, cv2.IMREAD_COLOR) | cv2.IMREAD_IGNORE_ORIENTATION
    try:
        bgr = cv2.imdecode(data, flag)
    except cv2.error as err:
        raise ImageConversionError(f"{kind} data ({data.size} bytes) could not be decoded: {err}") from None
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
