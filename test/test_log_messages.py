"""Issue #11 finding 7: logs that tell the truth (device, lost frames). The clear exit on a bad --params-file is
test_node_entry.py."""
from pathlib import Path

import pytest

from sage_ros.ros.qos import lost_message
from sage_ros.runtime.backends import make_backend

REPO = Path(__file__).resolve().parents[1]


def test_device_that_is_not_there_is_reported_as_the_one_that_runs():
    backend = make_backend(REPO / "models" / "tinyvae_l8_fp32", "onnxruntime", "cuda:99")
    info = backend.describe()
    if any(p in info["providers"] for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider")):
        pytest.skip("a GPU provider is present here")
    assert (info["device"], info["requested_device"]) == ("cpu", "cuda:99")


def test_lost_frames_warning_blames_best_effort_only_when_input_is_best_effort():
    assert "best-effort input" in lost_message("/cam/image", 3, reliable=False)
    reliable = lost_message("/cam/image", 3, reliable=True)
    assert "best-effort input" not in reliable and "reliable input" in reliable
