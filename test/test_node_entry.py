"""Every node process starts and stops through ros/run.py's run_node: a --params-file rclpy cannot read is one
clear line and exit code 2 for each executable (the latent decoder used to print a traceback)."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("command", [[str(BIN / "tinyvae_encoder")],
                                     [sys.executable, "-m", "sage_ros.ros.decoder_node"],
                                     [sys.executable, "-m", "sage_ros.ros.compression_node"]],
                         ids=["encoder", "decoder", "compression_node"])
def test_missing_params_file_exits_with_one_clear_line(tmp_path, command):
    result = subprocess.run([*command, "--ros-args", "--params-file", str(tmp_path / "missing.yaml")],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "cannot start" in result.stderr and "params" in result.stderr
    assert sum("cannot start" in line for line in result.stderr.splitlines()) == 1, result.stderr


def test_run_node_closes_the_node_it_made_when_start_fails(monkeypatch):
    import rclpy

    from sage_ros.ros import run

    events = []

    class FakeNode:
        def destroy_node(self):
            events.append("destroy")
    monkeypatch.setattr(rclpy, "init", lambda args=None: events.append("init"))
    monkeypatch.setattr(rclpy, "try_shutdown", lambda: events.append("shutdown"))
    code = run.run_node("fake", FakeNode, [], start=lambda node: False, close=lambda node: events.append("close"))
    assert code == 1
    assert events == ["init", "close", "destroy", "shutdown"]
