"""Frames -> model input: value range, crop geometry, motion attention, buffer reuse."""
import numpy as np
import pytest

from sage_ros.runtime.image_codec import ImageConversionError
from sage_ros.runtime.preprocess import Preprocessor, center_window, letterbox, to_nchw


def test_range_mapping_for_both_model_families():
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[0, 0] = 255
    unit = Preprocessor(64, (0.0, 1.0))(frame)
    signed = Preprocessor(64, (-1.0, 1.0))(frame)
    assert unit.shape == (1, 3, 64, 64) and unit.dtype == np.float32
    assert unit.min() == 0.0 and unit[0, :, 0, 0].tolist() == [1.0, 1.0, 1.0]
    assert signed.min() == -1.0 and np.allclose(signed[0, :, 0, 0], 1.0)


def test_nchw_channel_order_is_rgb():
    frame = np.zeros((4, 4, 3), np.uint8)
    frame[..., 0] = 255  # red
    x = to_nchw(frame[None], (0.0, 1.0))
    assert x[0, 0].min() == 1.0 and x[0, 1:].max() == 0.0


def test_resize_uses_area_interpolation():
    frame = np.zeros((128, 128, 3), np.uint8)
    frame[::2, ::2] = 255  # area averaging of 2x2 blocks gives exactly a quarter
    x = Preprocessor(64, (0.0, 1.0), "resize")(frame)
    assert np.allclose(x, 255 // 4 / 255, atol=1 / 255)


def test_center_crop_takes_the_middle_square():
    frame = np.zeros((100, 300, 3), np.uint8)
    frame[:, 100:200] = 200
    prep = Preprocessor(50, (0.0, 1.0), "center")
    x = prep(frame)
    assert prep.last_window() == (100, 0, 100, 100)
    assert np.allclose(x, 200 / 255)
    assert center_window((480, 640), (64, 64)) == (80, 0, 480, 480)


def test_letterbox_keeps_aspect_and_pads_black():
    frame = np.full((100, 200, 3), 255, np.uint8)
    out = letterbox(frame, (64, 64))
    assert out[:16].max() == 0 and out[48:].max() == 0 and out[16:48].min() == 255
    x = Preprocessor(64, (-1.0, 1.0), "letterbox")(frame)
    assert x[0, :, 0, 0].tolist() == [-1.0, -1.0, -1.0]


def test_motion_crop_follows_the_moving_object_per_camera():
    prep = Preprocessor(64, (0.0, 1.0), "motion")
    background = np.full((480, 640, 3), 90, np.uint8)
    prep(background, cameras=["left"])
    assert prep.last_window("left") == (288, 208, 64, 64)  # first frame: centre
    moved = background.copy()
    moved[300:340, 500:540] = 250
    x = prep(moved, cameras=["left"])
    x0, y0, w, h = prep.last_window("left")
    assert (w, h) == (64, 64) and abs(x0 + 32 - 520) <= 4 and abs(y0 + 32 - 320) <= 4
    assert x.max() > 0.9  # the bright object is inside the crop
    prep(moved, cameras=["left"])  # nothing moves: keep the last motion window
    assert prep.last_window("left") == (x0, y0, w, h)
    prep(moved, cameras=["right"])  # another camera has its own state: centre on its first frame
    assert prep.last_window("right") == (288, 208, 64, 64)


def test_motion_window_is_clamped_to_the_frame_and_batches():
    prep = Preprocessor(64, (0.0, 1.0), "motion", motion_window=128)
    a = np.zeros((200, 300, 3), np.uint8)
    b = a.copy()
    b[0:20, 280:300] = 255  # motion in the top-right corner
    prep([a, a])
    x = prep([b, a])
    assert x.shape == (2, 3, 64, 64)
    assert prep.last_window(0) == (300 - 128, 0, 128, 128)
    assert prep.last_window(1) == (86, 36, 128, 128)  # camera 1 saw no motion: centre


def test_size_change_resets_motion_state():
    prep = Preprocessor(32, (0.0, 1.0), "motion")
    prep(np.zeros((100, 100, 3), np.uint8))
    prep(np.full((60, 80, 3), 255, np.uint8))
    assert prep.last_window() == (24, 14, 32, 32)


def test_reused_output_buffer():
    prep = Preprocessor(16, (0.0, 1.0), reuse_output=True)
    first = prep(np.zeros((20, 20, 3), np.uint8))
    second = prep(np.full((20, 20, 3), 255, np.uint8))
    assert first is second and second.max() == 1.0


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32),
                                 np.zeros((0, 4, 3), np.uint8), np.zeros((4, 4, 4), np.uint8)])
def test_bad_frames_raise(bad):
    with pytest.raises(ImageConversionError):
        Preprocessor(8)(bad)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="crop"):
        Preprocessor(8, crop="zoom")
    with pytest.raises(ValueError, match="camera"):
        Preprocessor(8)([np.zeros((4, 4, 3), np.uint8)], cameras=[1, 2])
