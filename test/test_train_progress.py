"""ProgressWriter.fail_on_error: a failing job leaves progress.json saying so, and the error still propagates."""
import pytest

from sage_ros.compression.progress import ProgressWriter, read_progress


def test_fail_on_error_records_and_reraises(tmp_path):
    progress = ProgressWriter(tmp_path, "export")
    with pytest.raises(ValueError, match="bad bundle"):
        with progress.fail_on_error():
            progress.update("loading", 0, 3, force=True)
            raise ValueError("bad bundle")
    state = read_progress(tmp_path)
    assert state["phase"] == "failed" and state["done"] is True
    assert state["error"] == "ValueError: bad bundle"


def test_fail_on_error_leaves_success_alone(tmp_path):
    progress = ProgressWriter(tmp_path, "export")
    with progress.fail_on_error():
        progress.update("loading", 1, 3, force=True)
    state = read_progress(tmp_path)
    assert state["phase"] == "loading" and state["done"] is False and state["error"] is None
