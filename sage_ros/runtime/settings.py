"""Allowed values and defaults of the runtime's settings, defined once: the encoder node's ROS parameters
(ros/params.py), the command line and the runtime itself (preprocess.py, backends/, image_codec.py) import them
from here. Imports nothing, so even ros/params.py (kept free of numpy and cv2) can.
"""
from __future__ import annotations

# Inference backends (runtime/backends): "auto" picks tensorrt on a GPU with TensorRT, else onnxruntime.
BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch")

# How a camera frame becomes the model's input (runtime/preprocess.py explains each).
CROP_MODES = ("resize", "center", "letterbox", "motion")

# Default most pixels a frame may declare (sensor_msgs width x height, or a PNG/JPEG header): 4096 x 4096, i.e.
# every common camera up to 16 MP (4K UHD 8.3 MP, 12 MP machine-vision sensors) passes, while a full-size
# decode of the largest accepted frame stays at 48 MiB of RGB. The encoder node's `max_input_pixels` sets it.
DEFAULT_MAX_PIXELS = 4096 * 4096
