"""sensor_msgs/Image <-> numpy round trips (hypothesis) and every malformed-message error path."""
import array
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sage_ros.runtime.image_codec import (
    ENCODINGS, ImageConversionError, bytes_per_pixel, decode_compressed, encode_compressed, image_msg_to_rgb8,
    image_to_numpy, jpeg_size, numpy_to_image, reduction_factor, to_rgb8)

ALL_ENCODINGS = sorted(ENCODINGS)


def random_image(rng, encoding, height, width):
    dtype, channels = ENCODINGS[encoding]
    shape = (height, width) if channels == 1 else (height, width, channels)
    if dtype == np.float32:
        return rng.standard_normal(shape).astype(np.float32)
    return rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)


@settings(max_examples=60, deadline=None)
@given(encoding=st.sampled_from(ALL_ENCODINGS), height=st.integers(1, 12), half_width=st.integers(1, 9),
       padding=st.integers(0, 7), big_endian=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_round_trip_every_encoding(encoding, height, half_width, padding, big_endian, seed):
    width = 2 * half_width  # yuv422 needs an even width; others are covered with odd widths below
    image = random_image(np.random.default_rng(seed), encoding, height, width)
    step = width * bytes_per_pixel(encoding) + padding
    msg = numpy_to_image(image, encoding, step=step, is_bigendian=big_endian)
    assert isinstance(msg.data, array.array) and len(msg.data) == step * height
    back = image_to_numpy(msg)
    assert back.dtype == image.dtype and back.shape == image.shape
    np.testing.assert_array_equal(back, image)


@settings(max_examples=30, deadline=None)
@given(encoding=st.sampled_from([e for e in ALL_ENCODINGS if "yu" not in e and e != "uyvy"]),
       height=st.integers(1, 9), width=st.integers(1, 9), seed=st.integers(0, 2**31 - 1))
def test_round_trip_odd_widths_through_rosbags_style_message(encoding, height, width, seed):
    """rosbags messages hold data as a uint8 ndarray; numpy_to_image keeps that type when filling one."""
    image = random_image(np.random.default_rng(seed), encoding, height, width)
    target = SimpleNamespace(header=None, height=0, width=0, encoding="", is_bigendian=0, step=0,
                             data=np.zeros(0, np.uint8))
    msg = numpy_to_image(image, encoding, msg=target)
    assert msg is target and isinstance(msg.data, np.ndarray)
    np.testing.assert_array_equal(image_to_numpy(msg), image)


def test_zero_copy_view_of_message_data():
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    msg = numpy_to_image(image, "rgb8")
    view = image_to_numpy(msg)
    assert np.shares_memory(view, np.frombuffer(msg.data, np.uint8))


def test_big_endian_wire_bytes():
    msg = numpy_to_image(np.array([[0x0102]], np.uint16), "mono16", is_bigendian=True)
    assert bytes(msg.data) == b"\x01\x02" and msg.is_bigendian == 1
    assert image_to_numpy(msg)[0, 0] == 0x0102


def test_rclpy_message_type_is_filled_from_array_not_list():
    pytest.importorskip("sensor_msgs.msg")
    from sensor_msgs.msg import Image
    msg = numpy_to_image(np.zeros((2, 4, 3), np.uint8), "bgr8", header=None)
    assert isinstance(msg, Image) and msg.step == 12 and msg.encoding == "bgr8"


def _msg(**fields):
    base = dict(height=2, width=4, encoding="rgb8", is_bigendian=0, step=12, data=bytes(24))
    base.update(fields)
    return SimpleNamespace(**base)


@pytest.mark.parametrize("fields, message", [
    (dict(data=bytes(23)), "expected step"),
    (dict(data=bytes(25)), "expected step"),
    (dict(height=0, data=b""), "zero-size"),
    (dict(width=0), "zero-size"),
    (dict(encoding="rgb32"), "unsupported encoding"),
    (dict(encoding=None), "unsupported encoding"),
    (dict(step=11, data=bytes(22)), "step 11"),
    (dict(encoding="yuv422", width=3, step=6, data=bytes(12)), "odd"),
    (dict(data=12345), "not a byte buffer"),
])
def test_malformed_messages_raise_one_error_type(fields, message):
    with pytest.raises(ImageConversionError, match=message):
        image_to_numpy(_msg(**fields))


def test_nan_and_inf_rejected_when_asked():
    depth = np.ones((3, 3), np.float32)
    depth[1, 1] = np.nan
    msg = numpy_to_image(depth, "32FC1")
    assert np.isnan(image_to_numpy(msg)[1, 1])  # allowed by default (depth images carry NaN)
    with pytest.raises(ImageConversionError, match="NaN"):
        image_to_numpy(msg, check_finite=True)
    with pytest.raises(ImageConversionError, match="NaN"):
        image_msg_to_rgb8(msg)


def test_numpy_to_image_rejects_wrong_shapes_and_dtypes():
    with pytest.raises(ImageConversionError, match="dtype"):
        numpy_to_image(np.zeros((2, 2, 3), np.float32), "rgb8")
    with pytest.raises(ImageConversionError, match="x 3"):
        numpy_to_image(np.zeros((2, 2), np.uint8), "rgb8")
    with pytest.raises(ImageConversionError, match="zero-size"):
        numpy_to_image(np.zeros((0, 2, 3), np.uint8), "rgb8")
    with pytest.raises(ImageConversionError, match="step"):
        numpy_to_image(np.zeros((2, 2, 3), np.uint8), "rgb8", step=5)


def test_to_rgb8_matches_opencv_conversions():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    bgr = rgb[:, :, ::-1].copy()
    np.testing.assert_array_equal(to_rgb8(bgr, "bgr8"), rgb)
    rgba = np.dstack([rgb, np.full((6, 8), 7, np.uint8)])
    np.testing.assert_array_equal(to_rgb8(rgba, "rgba8"), rgb)
    np.testing.assert_array_equal(to_rgb8(rgba[:, :, [2, 1, 0, 3]].copy(), "bgra8"), rgb)
    gray = rng.integers(0, 256, (6, 8), dtype=np.uint8)
    np.testing.assert_array_equal(to_rgb8(gray, "mono8"), np.dstack([gray] * 3))
    mono16 = (gray.astype(np.uint16) << 8) | 0xFF  # cv_bridge scales by 255/65535 (not the high byte)
    np.testing.assert_array_equal(to_rgb8(mono16, "mono16"), np.dstack([cv2.convertScaleAbs(mono16, alpha=255 / 65535)] * 3))
    np.testing.assert_array_equal(to_rgb8(np.full((2, 2), 2.0, np.float32), "32FC1"), np.full((2, 2, 3), 255))
    # UYVY and YUY2 carry the same pixels with bytes in a different order.
    yuy2 = rng.integers(16, 235, (6, 8, 2), dtype=np.uint8)
    pairs = yuy2.reshape(6, 4, 4)  # Y0 U Y1 V
    uyvy = pairs[:, :, [1, 0, 3, 2]].reshape(6, 8, 2)  # U Y0 V Y1
    out = to_rgb8(yuy2, "yuv422_yuy2")
    np.testing.assert_array_equal(out, to_rgb8(uyvy, "yuv422"))
    np.testing.assert_array_equal(out, cv2.cvtColor(yuy2, cv2.COLOR_YUV2RGB_YUY2))


def test_yuv422_message_to_rgb8_on_a_grey_frame():
    uyvy = np.empty((4, 6, 2), np.uint8)
    uyvy[:, :, 0] = 128  # U/V neutral
    uyvy[:, :, 1] = 100  # Y
    rgb = image_msg_to_rgb8(numpy_to_image(uyvy, "yuv422"))
    assert rgb.shape == (4, 6, 3) and np.ptp(rgb) <= 1


# --- CompressedImage ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def photo():
    """A real photograph shipped with scikit-image (no download)."""
    from skimage import data
    return data.astronaut()  # 512 x 512 RGB


def test_jpeg_round_trip_and_header_size(photo):
    jpg = encode_compressed(photo, "jpeg", quality=95)
    assert jpeg_size(np.frombuffer(jpg, np.uint8)) == (512, 512)
    out = decode_compressed(SimpleNamespace(format="jpeg", data=jpg))
    assert out.shape == (512, 512, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - photo).mean() < 4  # RGB order kept (BGR would differ by far more)


@pytest.mark.parametrize("min_size, expected", [(None, 512), (64, 64), (65, 128), (200, 256), (300, 512),
                                               ((64, 100), 128)])
def test_reduced_resolution_decode(photo, min_size, expected):
    jpg = encode_compressed(photo, "jpeg")
    out = decode_compressed(SimpleNamespace(format="rgb8; jpeg compressed bgr8", data=array.array("B", jpg)),
                            min_size=min_size)
    assert out.shape == (expected, expected, 3)


def test_reduction_factor_rounds_like_libjpeg():
    assert reduction_factor((576, 768), 64) == 8  # 72 x 96
    assert reduction_factor((576, 768), 73) == 4
    assert reduction_factor((100, 100), 13) == 8  # ceil(100 / 8) = 13
    assert reduction_factor((100, 100), 14) == 4
    assert reduction_factor((100, 100), None) == 1


def test_png_decodes_at_full_size_and_is_lossless(photo):
    png = encode_compressed(photo[:64, :96], "png")
    out = decode_compressed(SimpleNamespace(format="png", data=png), min_size=8)
    np.testing.assert_array_equal(out, photo[:64, :96])


@pytest.mark.parametrize("fmt, data, message", [
    ("jpeg", b"", "no data"),
    ("jpeg", b"not an image at all", "neither JPEG nor PNG"),
    ("16UC1; compressedDepth", b"\x89PNG\r\n\x1a\n" + bytes(20), "compressedDepth"),
    ("tiff", None, "unsupported compressed format"),
    ("jpeg", "truncated", "unreadable|could not be decoded|corrupt"),
])
def test_bad_compressed_messages(photo, fmt, data, message):
    jpg = encode_compressed(photo[:32, :32])
    if data is None:
        data = jpg
    elif data == "truncated":
        data = jpg[:40]
    with pytest.raises(ImageConversionError, match=message):
        decode_compressed(SimpleNamespace(format=fmt, data=data))
