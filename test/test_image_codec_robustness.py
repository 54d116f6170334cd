"""Issue #11 findings 2, 6 and 8 at the codec level: cv_bridge's pixels for every encoding it converts to rgb8,
decompression bombs refused from the header, corrupt JPEG data detected where libjpeg can tell.

The expected pixels are computed from cv_bridge's conversion table (cv_bridge.cpp, getConversionCodes() and
toCvCopyImpl(): the colour conversion code at the source depth, then convertTo(CV_8U, 255/65535) for 16-bit
sources) with OpenCV calls of our own here: cv2.cvtColor, and cv2.convertScaleAbs for the saturating,
round-half-to-even depth change (for non-negative inputs it is convertTo's arithmetic).
"""
import io
import os
import subprocess
import sys
import textwrap
import time
import zlib
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sage_ros.runtime.image_codec import (
    DEFAULT_MAX_PIXELS, ImageConversionError, check_compressed, check_image, decode_compressed, encode_compressed,
    image_msg_to_rgb8, numpy_to_image)

# cv_bridge.cpp: encoding -> (OpenCV code to RGB or None for SAME_FORMAT, source is 16-bit)
CV_BRIDGE_TO_RGB8 = {
    "rgb8": (None, False), "bgr8": (cv2.COLOR_BGR2RGB, False), "rgba8": (cv2.COLOR_RGBA2RGB, False),
    "bgra8": (cv2.COLOR_BGRA2RGB, False), "mono8": (cv2.COLOR_GRAY2RGB, False),
    "mono16": (cv2.COLOR_GRAY2RGB, True), "rgb16": (None, True), "bgr16": (cv2.COLOR_BGR2RGB, True),
    "rgba16": (cv2.COLOR_RGBA2RGB, True), "bgra16": (cv2.COLOR_BGRA2RGB, True),
    "yuv422": (cv2.COLOR_YUV2RGB_UYVY, False), "yuv422_yuy2": (cv2.COLOR_YUV2RGB_YUY2, False),
    "bayer_rggb8": (cv2.COLOR_BayerBG2RGB, False), "bayer_bggr8": (cv2.COLOR_BayerRG2RGB, False),
    "bayer_gbrg8": (cv2.COLOR_BayerGR2RGB, False), "bayer_grbg8": (cv2.COLOR_BayerGB2RGB, False),
    "bayer_rggb16": (cv2.COLOR_BayerBG2RGB, True), "bayer_bggr16": (cv2.COLOR_BayerRG2RGB, True),
    "bayer_gbrg16": (cv2.COLOR_BayerGR2RGB, True), "bayer_grbg16": (cv2.COLOR_BayerGB2RGB, True),
}
CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "rgb16": 3, "bgr16": 3, "rgba16": 4, "bgra16": 4,
            "yuv422": 2, "yuv422_yuy2": 2}


def cv_bridge_rgb8(raw: np.ndarray, encoding: str) -> np.ndarray:
    code, sixteen = CV_BRIDGE_TO_RGB8[encoding]
    image = raw if code is None else cv2.cvtColor(raw, code)
    return cv2.convertScaleAbs(image, alpha=255.0 / 65535.0) if sixteen else image


def raw_image(rng, encoding, height, width):
    dtype = np.uint16 if CV_BRIDGE_TO_RGB8[encoding][1] else np.uint8
    channels = CHANNELS.get(encoding, 1)
    shape = (height, width, channels) if channels > 1 else (height, width)
    return rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)


@settings(max_examples=120, deadline=None)
@given(encoding=st.sampled_from(sorted(CV_BRIDGE_TO_RGB8)), height=st.integers(1, 9), half_width=st.integers(1, 7),
       padding=st.integers(0, 5), big_endian=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_every_cv_bridge_encoding_gives_cv_bridges_pixels(encoding, height, half_width, padding, big_endian, seed):
    raw = raw_image(np.random.default_rng(seed), encoding, height, 2 * half_width)
    row = raw[0].nbytes
    msg = numpy_to_image(raw, encoding, step=row + padding * raw.dtype.itemsize, is_bigendian=big_endian)
    np.testing.assert_array_equal(image_msg_to_rgb8(msg), cv_bridge_rgb8(raw, encoding))


def test_mono16_scaling_every_value():
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    for encoding in ("mono16", "16UC1"):  # 16UC1: as cvtColorForDisplay, which retypes it mono16
        out = image_msg_to_rgb8(numpy_to_image(values, encoding))
        np.testing.assert_array_equal(out, cv_bridge_rgb8(values, "mono16"))
    assert (out[..., 0] != (values >> 8)).sum() > 16000  # the old high-byte shortcut differs in ~25 % of values


def test_32fc1_rounds_half_to_even_and_saturates():
    # values whose float32 product with 255 is exactly k + 0.5: convertTo rounds them to the even neighbour
    k = np.arange(255, dtype=np.float32)
    ties = (k + np.float32(0.5)) / np.float32(255)
    ties = ties[(ties * np.float32(255)) == k + np.float32(0.5)]
    assert ties.size > 100
    values = np.concatenate([ties, np.float32([-3.0, -0.0, 0.0, 1.0, 1.0001, 7.5])])[None, :]
    out = image_msg_to_rgb8(numpy_to_image(values, "32FC1"))[0, :, 0]
    expected = cv2.convertScaleAbs(np.maximum(values, 0), alpha=255.0)[0]  # convertTo(CV_8U, 255): clip 0..255
    np.testing.assert_array_equal(out, expected)
    assert (out[:ties.size] % 2 == 0).all()


def _exif_rotated_jpeg(image_rgb: np.ndarray) -> bytes:
    from PIL import Image
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    buffer = io.BytesIO()
    Image.fromarray(image_rgb).save(buffer, format="JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


def test_jpeg_exif_orientation_is_ignored_as_cv_bridge_does():
    image = np.zeros((40, 64, 3), np.uint8)
    image[:, :32] = (200, 30, 30)
    data = _exif_rotated_jpeg(image)
    out = decode_compressed(SimpleNamespace(format="jpeg", data=data))
    unchanged = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)  # what cv_bridge decodes
    assert out.shape == (40, 64, 3)
    np.testing.assert_array_equal(out, cv2.cvtColor(unchanged, cv2.COLOR_BGR2RGB))


# --- decompression bombs ---------------------------------------------------------------------------------------

def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


def png_bomb(width: int, height: int, rows: int = 64) -> bytes:
    """A valid PNG header (correct CRCs) declaring width x height grey pixels, with the first `rows` rows of
    zeros: a decoder that trusts the header allocates the full frame before it finds the data short."""
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    idat = zlib.compress(bytes(rows * (width + 1)), 9)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def jpeg_bomb(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF0 marker is rewritten to declare width x height (libjpeg fills the rest)."""
    data = bytearray(encode_compressed(np.full((16, 16, 3), 128, np.uint8), "jpeg"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


BOMBS = {"png_32000": lambda: png_bomb(32000, 32000), "png_16000": lambda: png_bomb(16000, 16000),
         "jpeg_65500": lambda: jpeg_bomb(65500, 65500)}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_bomb_refused_from_header_under_500ms(name):
    """Refused from the header: decoding any of these bombs takes seconds; the bound is loose for loaded CI machines."""
    msg = SimpleNamespace(format="png" if name.startswith("png") else "jpeg", data=BOMBS[name]())
    started = time.perf_counter()
    with pytest.raises(ImageConversionError, match="max_input_pixels"):
        decode_compressed(msg, min_size=64)
    assert time.perf_counter() - started < 0.5
    with pytest.raises(ImageConversionError, match="max_input_pixels"):
        check_compressed(msg)


def test_bomb_memory_under_50mb_in_a_fresh_process():
    """Peak RSS growth of decoding each bomb, measured in a child process capped at +1 GiB of address space (so a
    regression fails here instead of eating the machine)."""
    script = textwrap.dedent("""
        import resource, sys, time
        from types import SimpleNamespace
        sys.path.insert(0, sys.argv[1])
        from test_image_codec_robustness import BOMBS
        from sage_ros.runtime.image_codec import ImageConversionError, decode_compressed
        bombs = {name: make() for name, make in BOMBS.items()}
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for name, data in bombs.items():
            started = time.perf_counter()
            try:
                decode_compressed(SimpleNamespace(format="png" if name.startswith("png") else "jpeg", data=data), 64)
                outcome = "decoded"
            except (ImageConversionError, MemoryError) as err:
                outcome = type(err).__name__
            print(name, outcome, f"{(time.perf_counter() - started) * 1e3:.2f}",
                  resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base, flush=True)
    """)
    result = subprocess.run([sys.executable, "-c", script, os.path.dirname(__file__)], capture_output=True,
                            text=True, timeout=120,
                            preexec_fn=lambda: __import__("resource").setrlimit(
                                __import__("resource").RLIMIT_AS, (4 << 30, 4 << 30)))
    lines = [line.split() for line in result.stdout.splitlines()]
    assert len(lines) == len(BOMBS), result.stdout + result.stderr
    for name, outcome, ms, rss_kib in lines:
        assert outcome == "ImageConversionError", (name, outcome)
        assert float(ms) < 500, (name, ms)
        assert int(rss_kib) < 50 * 1024, (name, rss_kib)


def test_frames_at_the_limit_still_decode():
    assert DEFAULT_MAX_PIXELS >= 4000 * 3000  # a 12 MP machine-vision camera
    msg = SimpleNamespace(format="png", data=encode_compressed(np.zeros((30, 40, 3), np.uint8), "png"))
    assert check_compressed(msg, max_pixels=1200) == ("png", (30, 40))
    with pytest.raises(ImageConversionError, match="1201 pixels|max_input_pixels"):
        check_compressed(msg, max_pixels=1199)
    assert decode_compressed(msg, max_pixels=1200).shape == (30, 40, 3)
    raw = numpy_to_image(np.zeros((30, 40, 3), np.uint8), "rgb8")
    check_image(raw, max_pixels=1200)
    with pytest.raises(ImageConversionError, match="max_input_pixels"):
        check_image(raw, max_pixels=1199)


# --- corrupt JPEG data ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def photo_jpeg():
    from skimage import data
    return encode_compressed(data.astronaut(), "jpeg", quality=90)


def test_truncated_jpeg_is_a_bad_frame(photo_jpeg):
    for cut in (len(photo_jpeg) // 2, len(photo_jpeg) - 100):
        with pytest.raises(ImageConversionError, match="corrupt|Premature"):
            decode_compressed(SimpleNamespace(format="jpeg", data=photo_jpeg[:cut]), min_size=64)


def test_bit_flipped_jpegs_detected_where_libjpeg_warns(photo_jpeg):
    """JPEG has no checksum: only flips that make libjpeg warn can be caught. Count both sides."""
    rng = np.random.default_rng(11)
    detected = decoded_by_cv2 = 0
    trials = 150
    for _ in range(trials):
        data = bytearray(photo_jpeg)
        data[rng.integers(700, len(data) - 2)] ^= 1 << int(rng.integers(8))
        try:
            decode_compressed(SimpleNamespace(format="jpeg", data=bytes(data)))
        except ImageConversionError:
            detected += 1
        decoded_by_cv2 += cv2.imdecode(np.frombuffer(bytes(data), np.uint8), cv2.IMREAD_COLOR) is not None
    print(f"bit-flipped JPEGs refused: {detected}/{trials}; cv2.imdecode returned a picture for {decoded_by_cv2}")
    assert detected >= trials // 10  # libjpeg warns on a good share of single-bit flips
    assert decoded_by_cv2 == trials  # ...which plain cv2.imdecode silently decodes


def test_strict_decode_keeps_cv2_pixels_at_every_scale(photo_jpeg):
    for min_size, flag in ((None, cv2.IMREAD_COLOR), (256, cv2.IMREAD_REDUCED_COLOR_2),
                           (128, cv2.IMREAD_REDUCED_COLOR_4), (64, cv2.IMREAD_REDUCED_COLOR_8)):
        out = decode_compressed(SimpleNamespace(format="jpeg", data=photo_jpeg), min_size=min_size)
        reference = cv2.cvtColor(cv2.imdecode(np.frombuffer(photo_jpeg, np.uint8), flag), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(out, reference)
