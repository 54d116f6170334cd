"""`make venv` prints a phase line with the elapsed time before each step (instead of minutes of pip --quiet
silence) and still stops at the first failing step. Run with a stand-in venv whose python only echoes."""
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make")


def _fake_venv(tmp_path, rc: int) -> Path:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f"#!/bin/sh\necho 'Collecting something'\necho '  noise'\nexit {rc}\n")
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    return venv


@pytest.mark.parametrize("rc", [0, 1])
def test_make_venv_shows_its_phases_and_stops_on_failure(tmp_path, rc):
    venv = _fake_venv(tmp_path, rc)
    done = subprocess.run(["make", "--no-print-directory", "venv", f"VENV={venv}", "PYTHON=sh"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, env=dict(os.environ, MAKEFLAGS=""))
    phases = [line for line in done.stdout.splitlines() if line.startswith("== venv [")]
    if rc == 0:
        assert done.returncode == 0, done.stdout + done.stderr
        assert [p.split("] ", 1)[1].split(" ")[0] for p in phases] == ["creating", "upgrading", "installing",
                                                                          "installing", "done"]
        long_step = done.stdout.split("installing requirements")[1].split("== venv")[0]
        assert "Collecting something" in long_step and "noise" not in long_step  # pip's progress lines only
        assert (venv / ".installed-stamp").exists()
    else:
        assert done.returncode != 0 and not (venv / ".installed-stamp").exists()
        assert len(phases) == 2  # stopped at "upgrading pip"
