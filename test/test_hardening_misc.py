"""Issue #11 finding 7: logs that tell the truth (device, lost frames) and a clear exit on a bad --params-file."""
import subprocess
import sys
from pathlib import Path

import pytest

from sage_ros.ros.qos import lost_message
from sage_ros.runtime.backends import make_backend

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


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


@pytest.mark.parametrize("command", [[str(BIN / "tinyvae_encoder")],
                                     [sys.executable, "-m", "sage_ros.ros.compression_node"]])
def test_missing_params_file_exits_with_one_clear_line(tmp_path, command):
    result = subprocess.run([*command, "--ros-args", "--params-file", str(tmp_path / "missing.yaml")],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "cannot start" in result.stderr and "params" in result.stderr
