"""The crop window telemetry publishes is the region of the frame the model was actually fed, for every crop mode:
checked against the model input's pixels (crop the window from the source yourself, resize it, compare), and on a
coordinate-ramp frame where every model-input pixel says which source pixels it came from."""
import numpy as np
import pytest

from sage_ros.runtime.preprocess import Preprocessor, resize_area, to_nchw
from sage_ros.runtime.telemetry import CropWindow

RNG = np.random.default_rng(21)


def model_pixels(prepared, index=0):
    """The model input (range [0, 1]) back as uint8 h x w x 3."""
    return np.rint(prepared.batch[index].transpose(1, 2, 0) * 255.0).astype(np.uint8)


def own_crop(frame, window: CropWindow, size):
    """Crop the window from the frame (black outside it) and resize it as training does: what the model must see."""
    x, y, w, h = (int(round(v)) for v in window.as_tuple())
    canvas = np.zeros((h, w, 3), np.uint8)
    top, left = max(0, -y), max(0, -x)
    part = frame[max(0, y):y + h, max(0, x):x + w]
    canvas[top:top + part.shape[0], left:left + part.shape[1]] = part
    return resize_area(canvas, size)


def ramp_frame(height, width):
    """R = column, G = row (so height, width <= 256), B = 0."""
    frame = np.zeros((height, width, 3), np.uint8)
    frame[..., 0] = np.arange(width, dtype=np.uint8)[None, :]
    frame[..., 1] = np.arange(height, dtype=np.uint8)[:, None]
    return frame


def check_ramp(prepared, window: CropWindow, frame_hw, size, index=0):
    """Each model-input pixel (u, v) holds the mean source column / row of the frame region the window maps it to;
    padding (outside the frame) is black. Tolerance: one source pixel (area averaging + uint8 rounding)."""
    pixels = model_pixels(prepared, index).astype(np.float64)
    height, width = size
    u = np.arange(width)
    v = np.arange(height)
    # centre of each model pixel's region in source coordinates; a source pixel i covers [i, i + 1), value i
    cx = window.x + (u + 0.5) * window.w / width - 0.5
    cy = window.y + (v + 0.5) * window.h / height - 0.5
    left, right = window.x + u * window.w / width, window.x + (u + 1) * window.w / width  # each pixel's extent
    top, bottom = window.y + v * window.h / height, window.y + (v + 1) * window.h / height
    inside_x = (left >= -1e-6) & (right <= frame_hw[1] + 1e-6)
    inside_y = (top >= -1e-6) & (bottom <= frame_hw[0] + 1e-6)
    inside = inside_y[:, None] & inside_x[None, :]
    assert inside.sum() >= 0.1 * height * width  # the check covers a real part of the input
    np.testing.assert_allclose(pixels[..., 0][inside], np.broadcast_to(cx[None, :], inside.shape)[inside], atol=1.0)
    np.testing.assert_allclose(pixels[..., 1][inside], np.broadcast_to(cy[:, None], inside.shape)[inside], atol=1.0)
    outside_x = (right <= 1e-6) | (left >= frame_hw[1] - 1e-6)
    outside_y = (bottom <= 1e-6) | (top >= frame_hw[0] - 1e-6)
    outside = outside_y[:, None] | outside_x[None, :]
    assert (pixels[outside] == 0).all()
    return inside, outside


@pytest.mark.parametrize("mode", ["resize", "center"])
@pytest.mark.parametrize("frame_hw", [(480, 640), (600, 400), (333, 517), (64, 64)])
def test_resize_and_center_windows_are_what_the_model_was_fed(mode, frame_hw):
    frame = RNG.integers(0, 256, (*frame_hw, 3), dtype=np.uint8)
    prep = Preprocessor(64, (0.0, 1.0), mode)
    prepared = prep.prepare([frame])
    window = prepared.windows[0]
    if mode == "resize":
        assert window.as_tuple() == (0, 0, frame_hw[1], frame_hw[0])
    else:
        side = min(frame_hw)
        assert (window.w, window.h) == (side, side)
        assert window.x == (frame_hw[1] - side) // 2 and window.y == (frame_hw[0] - side) // 2
    assert not window.motion_found
    np.testing.assert_array_equal(prepared.batch, to_nchw(own_crop(frame, window, (64, 64))[None], (0.0, 1.0)))
    np.testing.assert_array_equal(prepared.batch, prep([frame]))  # __call__ is prepare().batch


def test_letterbox_window_includes_the_padding_and_is_what_the_model_was_fed():
    """640x480 -> 64x64: the frame fills 64x48 with 8 black rows above and below, i.e. the window is the frame plus
    80 source rows of padding on each side: (0, -80, 640, 640)."""
    frame = RNG.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    prepared = Preprocessor(64, (0.0, 1.0), "letterbox").prepare(frame)
    window = prepared.windows[0]
    assert window.as_tuple() == (0.0, -80.0, 640.0, 640.0)
    np.testing.assert_array_equal(prepared.batch, to_nchw(own_crop(frame, window, (64, 64))[None], (0.0, 1.0)))
    portrait = RNG.integers(0, 256, (640, 480, 3), dtype=np.uint8)
    prepared = Preprocessor(64, (0.0, 1.0), "letterbox").prepare(portrait)
    assert prepared.windows[0].as_tuple() == (-80.0, 0.0, 640.0, 640.0)
    np.testing.assert_array_equal(prepared.batch, to_nchw(own_crop(portrait, prepared.windows[0], (64, 64))[None],
                                                          (0.0, 1.0)))


@pytest.mark.parametrize("frame_hw", [(180, 250), (250, 97), (200, 200), (31, 255)])
def test_letterbox_window_on_a_ramp_with_rounded_sizes(frame_hw):
    """Sizes whose scaled frame rounds (180x250 -> 46x64): the window's per-axis scale follows the rounding."""
    frame = ramp_frame(*frame_hw)
    prepared = Preprocessor(64, (0.0, 1.0), "letterbox").prepare(frame)
    window = prepared.windows[0]
    _, outside = check_ramp(prepared, window, frame_hw, (64, 64))
    if frame_hw[0] != frame_hw[1]:
        assert outside.any() and min(window.x, window.y) < 0  # there is padding, and the window shows it


@pytest.mark.parametrize("mode", ["resize", "center"])
def test_resize_and_center_windows_on_a_ramp(mode):
    frame_hw = (180, 250)
    prepared = Preprocessor(64, (0.0, 1.0), mode).prepare(ramp_frame(*frame_hw))
    check_ramp(prepared, prepared.windows[0], frame_hw, (64, 64))


def test_motion_window_is_the_window_used_and_says_when_motion_moved_it():
    """First frame: centre, motion_found 0; a moving blob: the window jumps to it, motion_found 1; nothing moves:
    the window stays, motion_found 0. Every time the model input is the window cropped and resized."""
    frame_hw = (200, 256)
    base = ramp_frame(*frame_hw)  # motion lives in the B channel, so R / G still say where each pixel came from
    prep = Preprocessor(64, (0.0, 1.0), "motion", motion_window=96)
    first = prep.prepare(base, cameras=["cam"])
    assert first.windows[0].as_tuple() == ((256 - 96) // 2, (200 - 96) // 2, 96, 96)
    assert not first.windows[0].motion_found
    moved = base.copy()
    moved[150:180, 200:230, 2] = 255
    second = prep.prepare(moved, cameras=["cam"])
    window = second.windows[0]
    assert window.motion_found and (window.w, window.h) == (96, 96)
    assert window.x <= 200 and window.x + 96 >= 230 and window.y <= 150 and window.y + 96 >= 180
    assert window.as_tuple() == prep.last_window("cam")
    np.testing.assert_array_equal(second.batch, to_nchw(own_crop(moved, window, (64, 64))[None], (0.0, 1.0)))
    check_ramp(second, window, frame_hw, (64, 64))
    third = prep.prepare(moved, cameras=["cam"])
    assert third.windows[0].as_tuple() == window.as_tuple() and not third.windows[0].motion_found


def test_motion_windows_per_camera_in_one_batch():
    a = np.zeros((200, 300, 3), np.uint8)
    b = a.copy()
    b[0:20, 280:300] = 255
    prep = Preprocessor(64, (0.0, 1.0), "motion", motion_window=128)
    prep.prepare([a, a])
    prepared = prep.prepare([b, a])
    assert [w.as_tuple() for w in prepared.windows] == [(300 - 128, 0, 128, 128), (86, 36, 128, 128)]
    assert [w.motion_found for w in prepared.windows] == [True, False]
    for index, frame in enumerate([b, a]):
        expected = to_nchw(own_crop(frame, prepared.windows[index], (64, 64))[None], (0.0, 1.0))
        np.testing.assert_array_equal(prepared.batch[index:index + 1], expected)


def test_window_of_a_reduced_jpeg_decode_is_given_in_source_pixels():
    """A compressed 640x480 frame decoded at 1/4 (160x120) for a 64 px model: the window is scaled to the source."""
    from types import SimpleNamespace

    from sage_ros.runtime.image_codec import decode_compressed, encode_compressed
    from sage_ros.runtime.telemetry import source_hw

    frame = RNG.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    msg = SimpleNamespace(format="jpeg", data=encode_compressed(frame, "jpeg", 90))
    decoded = decode_compressed(msg, min_size=64)
    assert decoded.shape[:2] == (120, 160)
    assert source_hw(msg, compressed=True) == (480, 640)
    window = Preprocessor(64, (0.0, 1.0), "center").prepare(decoded).windows[0]
    assert window.as_tuple() == (20, 0, 120, 120)
    assert window.in_source((120, 160), (480, 640)).as_tuple() == (80.0, 0.0, 480.0, 480.0)
    assert window.in_source((120, 160), None) is window
