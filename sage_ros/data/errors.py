"""The two exception types of the data layer (numpy/cv2 only, no torch, no rclpy)."""
from __future__ import annotations


class DataError(ValueError):
    """Input data that cannot be turned into images: wrong format, wrong shape, unknown encoding, empty set."""


class DataNotFoundError(FileNotFoundError):
    """The bundled dataset (data_cache/) or a file it needs is missing."""

    def __init__(self, what: str):
        super().__init__(f"{what} is missing: run `make data` (or `python -m sage_ros.data.fetch --out data_cache`)"
                         " in the repository root, or point SAGE_ROS_DATA at a fetched data directory")
