"""Camera frames (uint8 H x W x 3 RGB) -> float32 N x 3 x h x w in a bundle's input range. numpy + cv2 only.

Crop modes (the region of the frame that becomes the model's h x w input; always resized with cv2.INTER_AREA,
as in training):
- "resize":    the whole frame, aspect ratio not kept.
- "center":    the largest centred window with the model's aspect ratio (square for every bundled model).
- "letterbox": the whole frame, aspect kept, padded with black (value 0 -> the range's low end).
- "motion":    SAGE IRP's attention crop: the window (motion_window px square, default the model size: 64 px)
               centred on the peak of frame-difference energy versus the previous frame of the same camera.
               First frame of a camera (or after a size change): centre. No motion above threshold: the last
               motion window is kept (a stopped object stays in view), else the centre.

`Preprocessor.prepare` returns, beside the model input, each frame's crop window in that frame's pixels
(runtime/telemetry.CropWindow: what `<output>/telemetry` publishes); `__call__` returns the input alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Sequence

import cv2
import numpy as np

from .image_codec import ImageConversionError
from .settings import CROP_MODES
from .telemetry import CropWindow, letterbox_window
# Frame differencing runs on a copy whose long side is at most this many pixels: ~1 ms from VGA instead of ~8.
MOTION_ANALYSIS_SIDE = 160


def check_frame(frame: np.ndarray) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        shape = getattr(frame, "shape", None)
        dtype = getattr(frame, "dtype", type(frame).__name__)
        raise ImageConversionError(f"expected an H x W x 3 uint8 RGB frame, got shape {shape} dtype {dtype}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ImageConversionError(f"zero-size frame {frame.shape}")
    return frame


def resize_area(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """cv2.INTER_AREA resize to (h, w); returns the input itself when it already has that size."""
    height, width = size
    if image.shape[0] == height and image.shape[1] == width:
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def center_window(frame_hw: tuple[int, int], aspect_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the largest centred window of aspect h:w inside the frame."""
    frame_h, frame_w = frame_hw
    target_h, target_w = aspect_hw
    scale = min(frame_h / target_h, frame_w / target_w)
    win_h, win_w = max(1, round(target_h * scale)), max(1, round(target_w * scale))
    return (frame_w - win_w) // 2, (frame_h - win_h) // 2, win_w, win_h


def center_crop(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    x, y, w, h = center_window(frame.shape[:2], size)
    return resize_area(frame[y:y + h, x:x + w], size)


def letterbox_placement(frame_hw: tuple[int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, new_h, new_w): where the aspect-kept resized frame sits on the letterbox's (h, w) canvas."""
    height, width = size
    scale = min(height / frame_hw[0], width / frame_hw[1])
    new_h = max(1, min(height, round(frame_hw[0] * scale)))
    new_w = max(1, min(width, round(frame_hw[1] * scale)))
    return (height - new_h) // 2, (width - new_w) // 2, new_h, new_w


def letterbox(frame: np.ndarray, size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """Resize keeping the aspect ratio so the frame fits (h, w), centred on black."""
    height, width = size
    top, left, new_h, new_w = letterbox_placement(frame.shape[:2], size)
    canvas = np.zeros((height, width, 3), np.uint8) if out is None else out
    canvas[...] = 0
    canvas[top:top + new_h, left:left + new_w] = resize_area(frame, (new_h, new_w))
    return canvas


def to_nchw(images: np.ndarray | Sequence[np.ndarray], input_range: tuple[float, float],
            out: np.ndarray | None = None) -> np.ndarray:
    """N x h x w x 3 uint8 -> N x 3 x h x w float32 with 0 -> lo and 255 -> hi (x / 255 * (hi - lo) + lo)."""
    batch = np.stack(images) if not isinstance(images, np.ndarray) else images
    if batch.ndim == 3:
        batch = batch[None]
    lo, hi = input_range
    shape = (batch.shape[0], 3, batch.shape[1], batch.shape[2])
    if out is None or out.shape != shape or out.dtype != np.float32:
        out = np.empty(shape, np.float32)
    np.multiply(batch.transpose(0, 3, 1, 2), np.float32((hi - lo) / 255.0), out=out, casting="unsafe")
    if lo != 0.0:
        out += np.float32(lo)
    return out


@dataclass
class Prepared:
    """A batch of model input (float32 N x 3 x h x w) and, per frame, the window of that frame it shows."""
    batch: np.ndarray
    windows: list[CropWindow]

    def subset(self, rows: Sequence[int]) -> "Prepared":
        """Only these frames (in this order)."""
        return Prepared(self.batch[list(rows)], [self.windows[row] for row in rows])


@dataclass
class _MotionState:
    previous: np.ndarray  # small grayscale copy of the last frame
    frame_hw: tuple[int, int]
    center: tuple[float, float] | None = None  # (cy, cx) of the last motion window, in frame pixels


class Preprocessor:
    """Frames -> model input for one bundle; keeps per-camera state for the motion crop.

    size: (h, w) the model takes; input_range: (lo, hi); crop: one of CROP_MODES; motion_window: side of the
    motion crop in frame pixels (default max(size)); motion_threshold: mean squared grey-level difference per
    window pixel below which a frame counts as "no motion"; reuse_output: return the same float buffer on every
    call with the same batch size (saves an allocation; the caller must consume it before the next call).
    """

    def __init__(self, size: int | tuple[int, int], input_range: tuple[float, float] = (0.0, 1.0),
                 crop: str = "resize", *, motion_window: int | None = None, motion_threshold: float = 25.0,
                 reuse_output: bool = False):
        if crop not in CROP_MODES:
            raise ValueError(f"crop must be one of {CROP_MODES}, got {crop!r}")
        self.size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        self.input_range = (float(input_range[0]), float(input_range[1]))
        self.crop_mode = crop
        self.motion_window = int(motion_window or max(self.size))
        if self.motion_window < 1:
            raise ValueError(f"motion_window must be >= 1, got {motion_window}")
        self.motion_threshold = float(motion_threshold)
        self.reuse_output = reuse_output
        self._motion: dict[Hashable, _MotionState] = {}
        self._last_window: dict[Hashable, tuple[int, int, int, int]] = {}
        self._out: np.ndarray | None = None
        self._letterbox_canvas: np.ndarray | None = None

    @classmethod
    def from_bundle(cls, bundle, crop: str = "resize", **kwargs) -> "Preprocessor":
        return cls(bundle.input_size, bundle.input_range, crop, **kwargs)

    def reset(self, camera: Hashable | None = None) -> None:
        """Forget the motion state of one camera (or of all)."""
        if camera is None:
            self._motion.clear()
            self._last_window.clear()
        else:
            self._motion.pop(camera, None)
            self._last_window.pop(camera, None)

    def last_window(self, camera: Hashable = 0) -> tuple[int, int, int, int] | None:
        """(x, y, w, h) of the frame region the last call used for `camera` (None before the first)."""
        return self._last_window.get(camera)

    def crop(self, frame: np.ndarray, camera: Hashable = 0) -> np.ndarray:
        """One frame -> h x w x 3 uint8 model-size image (the region chosen by the crop mode)."""
        return self.crop_with_window(frame, camera)[0]

    def crop_with_window(self, frame: np.ndarray, camera: Hashable = 0) -> tuple[np.ndarray, CropWindow]:
        """One frame -> (h x w x 3 uint8 model-size image, the window of the frame it shows, in frame pixels)."""
        frame = check_frame(frame)
        frame_h, frame_w = frame.shape[:2]
        if self.crop_mode == "resize":
            self._last_window[camera] = (0, 0, frame_w, frame_h)
            return resize_area(frame, self.size), CropWindow(0, 0, frame_w, frame_h)
        if self.crop_mode == "letterbox":
            self._last_window[camera] = (0, 0, frame_w, frame_h)
            placement = letterbox_placement(frame.shape[:2], self.size)
            return letterbox(frame, self.size), letterbox_window(frame.shape[:2], placement, self.size)
        found = False
        if self.crop_mode == "center":
            x, y, w, h = center_window(frame.shape[:2], self.size)
        else:
            (x, y, w, h), found = self._motion_window(frame, camera)
        self._last_window[camera] = (x, y, w, h)
        return resize_area(frame[y:y + h, x:x + w], self.size), CropWindow(x, y, w, h, found)

    def __call__(self, frames: np.ndarray | Sequence[np.ndarray],
                 cameras: Sequence[Hashable] | None = None) -> np.ndarray:
        """One frame (H x W x 3) or a list of frames -> float32 N x 3 x h x w; cameras[i] keys motion state."""
        return self.prepare(frames, cameras).batch

    def prepare(self, frames: np.ndarray | Sequence[np.ndarray],
                cameras: Sequence[Hashable] | None = None) -> Prepared:
        """As __call__, plus each frame's crop window (in that frame's pixels)."""
        if isinstance(frames, np.ndarray) and frames.ndim == 3:
            frames = [frames]
        cameras = list(range(len(frames))) if cameras is None else list(cameras)
        if len(cameras) != len(frames):
            raise ValueError(f"{len(frames)} frames but {len(cameras)} camera ids")
        cropped = [self.crop_with_window(frame, camera) for frame, camera in zip(frames, cameras)]
        crops = np.stack([image for image, _ in cropped])
        out = to_nchw(crops, self.input_range, self._out if self.reuse_output else None)
        if self.reuse_output:
            self._out = out
        return Prepared(out, [window for _, window in cropped])

    # --- motion attention ------------------------------------------------------------------------------------

    def _motion_window(self, frame: np.ndarray, camera: Hashable) -> tuple[tuple[int, int, int, int], bool]:
        """(the window, whether this frame's motion placed it)."""
        frame_h, frame_w = frame.shape[:2]
        side = min(self.motion_window, frame_h, frame_w)
        scale = min(1.0, MOTION_ANALYSIS_SIDE / max(frame_h, frame_w))
        small_hw = (max(1, round(frame_h * scale)), max(1, round(frame_w * scale)))
        gray = resize_area(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), small_hw)
        state = self._motion.get(camera)
        if state is None or state.frame_hw != (frame_h, frame_w):
            self._motion[camera] = _MotionState(previous=gray.copy(), frame_hw=(frame_h, frame_w))
            return self._window_at((frame_h / 2, frame_w / 2), side, (frame_h, frame_w)), False
        energy = cv2.absdiff(gray, state.previous).astype(np.float32) ** 2
        state.previous = gray.copy()
        small_side = max(1, round(side * scale))
        # Box filter = energy summed over the window centred at each pixel; its argmax is the motion peak.
        window_energy = cv2.boxFilter(energy, -1, (small_side, small_side), normalize=True,
                                      borderType=cv2.BORDER_CONSTANT)
        peak = np.unravel_index(int(np.argmax(window_energy)), window_energy.shape)
        found = bool(window_energy[peak] >= self.motion_threshold)
        if found:
            state.center = self._energy_centroid(energy, peak, small_side, scale)
        center = state.center if state.center is not None else (frame_h / 2, frame_w / 2)
        return self._window_at(center, side, (frame_h, frame_w)), found

    @staticmethod
    def _energy_centroid(energy: np.ndarray, peak: tuple[int, int], side: int, scale: float) -> tuple[float, float]:
        """Energy-weighted centre of the peak window, in frame pixels: the box filter's maximum is a plateau when
        the moving object is smaller than the window, and its first index would sit at the plateau's corner."""
        top, left = max(0, peak[0] - side // 2), max(0, peak[1] - side // 2)
        patch = energy[top:top + side, left:left + side]
        total = float(patch.sum())
        if total <= 0.0:  # only with motion_threshold <= 0 on identical frames
            return (peak[0] + 0.5) / scale, (peak[1] + 0.5) / scale
        rows, cols = np.indices(patch.shape, dtype=np.float32)
        cy = top + float((rows * patch).sum()) / total
        cx = left + float((cols * patch).sum()) / total
        return (cy + 0.5) / scale, (cx + 0.5) / scale

    @staticmethod
    def _window_at(center: tuple[float, float], side: int, frame_hw: tuple[int, int]) -> tuple[int, int, int, int]:
        """(x, y, side, side) centred on (cy, cx), shifted to stay inside the frame."""
        frame_h, frame_w = frame_hw
        y = int(round(center[0] - side / 2))
        x = int(round(center[1] - side / 2))
        return min(max(x, 0), frame_w - side), min(max(y, 0), frame_h - side), side, side
