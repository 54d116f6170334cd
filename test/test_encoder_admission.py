"""Issue #11 findings 1 and 2 without DDS: hypothesis over the encoder node's admission + latest-frame-wins logic.

The node's subscription callback is `admission_error` then `LatestFrameSlots.put(Pending)`; its worker is
`LatestFrameSlots.take` then `first_decodable(pending, frame_from_message)`. Random interleavings of good and
malformed frames on two cameras, with the worker taking at random moments, must never lose a good frame to a
malformed one (same camera or the other), never encode a malformed one, never hand a bomb to a decoder, and an
admitted raw frame must always convert (the cheap checks are exactly the conversion's checks).
"""
from functools import partial
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sage_ros.ros.encoding import (FALLBACK_DEPTH, LatestFrameSlots, Pending, admission_error, first_decodable,
                                   frame_from_message)
from sage_ros.runtime.image_codec import ENCODINGS, encode_compressed, image_msg_to_rgb8, numpy_to_image
from test_image_codec_robustness import jpeg_bomb, png_bomb

MAX_PIXELS = 64 * 64


def _raw(kind: str, ident: int):
    image = np.full((8, 8, 3), ident % 256, np.uint8)
    msg = numpy_to_image(image, "rgb8")
    if kind == "short":
        msg.data = msg.data[:-3]
    elif kind == "encoding":
        msg.encoding = "rgb9"
    elif kind == "zero":
        msg.height = 0
    elif kind == "huge":  # declares more pixels than allowed, data to match
        msg = numpy_to_image(np.zeros((65, 65, 3), np.uint8), "rgb8")
    elif kind == "step":
        msg.step = 5
    elif kind == "nan":
        msg = numpy_to_image(np.full((4, 4), np.nan, np.float32), "32FC1")
    elif kind == "oddyuv":
        msg = numpy_to_image(np.zeros((2, 4, 2), np.uint8), "yuv422")
        msg.width, msg.step = 3, 6
    return SimpleNamespace(height=msg.height, width=msg.width, encoding=msg.encoding, step=msg.step,
                           is_bigendian=msg.is_bigendian, data=msg.data, ident=ident)


_JPEG = {}


def _compressed(kind: str, ident: int):
    if kind not in _JPEG:
        good = encode_compressed(np.full((32, 32, 3), 90, np.uint8), "jpeg")
        _JPEG[kind] = {"good": good, "png_bomb": png_bomb(20000, 20000, rows=4), "jpeg_bomb": jpeg_bomb(30000, 30000),
                       "truncated": good[:len(good) // 2], "garbage": b"\xff\xd8\xff" + bytes(40),
                       "neither": b"GIF89a" + bytes(30), "empty": b""}[kind]
    return SimpleNamespace(format="jpeg", data=_JPEG[kind], ident=ident)


RAW_BAD = ["short", "encoding", "zero", "huge", "step", "nan", "oddyuv"]
COMPRESSED_BAD = ["png_bomb", "jpeg_bomb", "truncated", "garbage", "neither", "empty"]
DECODE_BAD = {"truncated"}  # passes the header checks; only decoding shows it


events = st.lists(st.one_of(
    st.tuples(st.just("frame"), st.integers(0, 1), st.booleans(), st.integers(0, 6)),
    st.just(("take",))), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(compressed=st.booleans(), script=events)
def test_no_good_frame_is_lost_to_a_malformed_one(compressed, script):
    slots = LatestFrameSlots(2)
    decoded = []

    def decode(msg):
        decoded.append(msg)
        return frame_from_message(msg, compressed=compressed, min_size=16, max_pixels=MAX_PIXELS)

    bad_kinds = COMPRESSED_BAD if compressed else RAW_BAD
    since_take = {0: [], 1: []}  # admitted (ident, good) per camera since the last take
    ident = 0
    for event in [*script, ("take",)]:
        if event[0] == "frame":
            _, camera, good, which = event
            ident += 1
            kind = "good" if good else bad_kinds[which % len(bad_kinds)]
            msg = (_compressed if compressed else _raw)(kind, ident)
            if admission_error(msg, compressed=compressed, max_pixels=MAX_PIXELS) is None:  # the node's callback
                assert good or (compressed and kind in DECODE_BAD), kind
                slots.put(camera, Pending(msg, 0.0))
                since_take[camera].append((ident, good))
            else:
                assert not good
            continue
        encoded = {}
        for camera, pending in slots.take(timeout=0):  # the node's worker
            frame, used, _reasons = first_decodable(pending, decode)
            if used is not None:
                assert frame.shape[2] == 3
                encoded[camera] = used.msg.ident
        for camera in (0, 1):
            window = since_take[camera][-(FALLBACK_DEPTH + 1):]
            goods = [i for i, good in window if good]
            assert encoded.get(camera) == (goods[-1] if goods else None), (camera, since_take[camera], encoded)
            since_take[camera] = []
    for msg in decoded:  # no bomb ever reached a decoder
        assert len(msg.data) not in (len(_JPEG.get("png_bomb", b"")) or -1, len(_JPEG.get("jpeg_bomb", b"")) or -1)


def _message_strategy():
    encodings = st.sampled_from(sorted(ENCODINGS) + ["rgb9", "", "BGR8"])
    return st.builds(lambda enc, h, w, step_pad, length_delta, big: (enc, h, w, step_pad, length_delta, big),
                     encodings, st.integers(-1, 6), st.integers(-1, 7), st.integers(-3, 4), st.integers(-2, 2),
                     st.booleans())


@settings(max_examples=400, deadline=None)
@given(spec=_message_strategy(), seed=st.integers(0, 2**31 - 1))
def test_raw_admission_equals_convertibility(spec, seed):
    """Whatever the fields, a raw frame the callback admits converts, and one it refuses does not."""
    encoding, height, width, step_pad, length_delta, big = spec
    dtype, channels = ENCODINGS.get(encoding, (np.dtype(np.uint8), 3))
    row = max(width, 0) * channels * dtype.itemsize
    step = max(row + step_pad * dtype.itemsize, 0)
    size = max(step * max(height, 0) + length_delta, 0)
    data = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)
    if encoding == "32FC1" and size:
        data[: size - size % 4] = np.frombuffer(np.float32(0.25).tobytes() * (size // 4), np.uint8)
    msg = SimpleNamespace(height=height, width=width, encoding=encoding, is_bigendian=int(big), step=step,
                          data=data.tobytes())
    admitted = admission_error(msg, compressed=False, max_pixels=MAX_PIXELS) is None
    try:
        image_msg_to_rgb8(msg)
        converts = True
    except ValueError:
        converts = False
    assert admitted == converts, (spec, admission_error(msg, compressed=False, max_pixels=MAX_PIXELS))


@pytest.mark.parametrize("kind", ["png_bomb", "jpeg_bomb"])
def test_bombs_are_refused_in_the_callback(kind):
    msg = _compressed(kind, 0)
    assert "max_input_pixels" in admission_error(msg, compressed=True, max_pixels=MAX_PIXELS)


def test_parameter_default_is_the_codec_default():
    from sage_ros.ros import params as P
    from sage_ros.runtime.image_codec import DEFAULT_MAX_PIXELS

    assert P.SPECS["max_input_pixels"].default == DEFAULT_MAX_PIXELS == P.DEFAULT_MAX_PIXELS
    assert P.SPECS["qos_depth"].default >= 2  # depth 1 lets the middleware drop a good frame (bench/input_depth.py)


_SMALL = {"jpeg": encode_compressed(np.random.default_rng(3).integers(0, 256, (24, 40, 3), dtype=np.uint8), "jpeg"),
          "png": encode_compressed(np.random.default_rng(4).integers(0, 256, (24, 40, 3), dtype=np.uint8), "png")}


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(["jpeg", "png"]), cut=st.integers(0, 4000),
       flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 7)), max_size=4),
       dims=st.one_of(st.none(), st.tuples(st.integers(0, 65535), st.integers(0, 65535))))
def test_mutated_compressed_frames_raise_only_conversion_errors(kind, cut, flips, dims):
    """Whatever happens to a JPEG/PNG (cut short, bits flipped, header dimensions rewritten), decoding either gives
    an RGB frame or raises ImageConversionError (a bad frame) quickly; a declared size over the limit is never
    decoded."""
    import time

    from sage_ros.runtime.image_codec import ImageConversionError, decode_compressed

    data = bytearray(_SMALL[kind])
    if dims is not None:
        height, width = dims
        if kind == "png":
            data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
        else:
            sof = data.index(b"\xff\xc0")
            data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    for position, bit in flips:
        if position < len(data):
            data[position] ^= 1 << bit
    data = bytes(data[:cut]) if cut < len(data) else bytes(data)
    started = time.perf_counter()
    try:
        frame = decode_compressed(SimpleNamespace(format=kind, data=data), min_size=8, max_pixels=MAX_PIXELS)
        assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
        assert frame.shape[0] * frame.shape[1] <= MAX_PIXELS
    except ImageConversionError:
        pass
    if dims is not None and dims[0] * dims[1] > MAX_PIXELS:
        assert time.perf_counter() - started < 0.05
