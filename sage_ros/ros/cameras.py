"""What the encoder node is made of besides its lifecycle: the executables' presets (node name, default bundle),
the `bundle` parameter's resolution, and one camera's topics and ROS endpoints."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sage_ros.ros import params as P
from sage_ros.runtime.bundle import resolve_bundle_path
from sage_ros.runtime.consumer import shipped_model_dirs


@dataclass(frozen=True)
class Preset:
    node_name: str
    default_bundle: str  # a directory name under the shipped models/


PRESETS = {
    "tinyvae": Preset("tinyvae_encoder", P.DEFAULT_BUNDLES["tinyvae"]),
    "puzzle": Preset("puzzle_encoder", P.DEFAULT_BUNDLES["puzzle"]),
}


def resolve_bundle(value: str, preset: str) -> Path:
    """The `bundle` parameter -> a directory: a shipped bundle's name, a bundle directory or a file inside one."""
    return resolve_bundle_path(value or PRESETS[preset].default_bundle, shipped_model_dirs())


@dataclass
class Camera:
    image_topic: str          # as given in image_topics
    input_topic: str          # subscribed: image_topic or image_topic/compressed
    output_topic: str
    reconstruction_topic: str
    publisher: Any = None
    reconstruction_publisher: Any = None
    info_publisher: Any = None  # latched <output>/info (ros/info.py)
    telemetry_publisher: Any = None  # <output>/telemetry (runtime/telemetry.py)
    subscription: Any = None
    publisher_watch: Any = None  # Humble only: polls publisher counts (no matched event there; ros/compat.py)
    publishers_matched: int = 0
