"""sage_ros/ and launch/ stay Python 3.10 code (ROS 2 Humble on Ubuntu 22.04 / JetPack 6): vermin (pinned in
requirements) checks syntax and standard-library use against 3.10; where a real 3.10 interpreter is on this
machine, it compiles every file too."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VERMIN = [str(Path(sys.executable).parent / "vermin"), "-t=3.10-", "--no-tips", "--violations", "--eval-annotations"]


def test_sage_ros_and_launch_need_nothing_newer_than_3_10():
    result = subprocess.run([*VERMIN, "sage_ros", "launch"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert "Analyzing" in result.stdout, result.stdout + result.stderr  # it did look at the files
    assert result.returncode == 0, f"Python > 3.10 features in sage_ros/ or launch/:\n{result.stdout}{result.stderr}"


def test_the_check_catches_3_11_features(tmp_path):
    (tmp_path / "new.py").write_text("import tomllib\n\ntry:\n    pass\nexcept* ValueError:\n    pass\n")
    result = subprocess.run([*VERMIN, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "tomllib" in result.stdout and "except*" in result.stdout, result.stdout


def python310() -> str | None:
    candidates = [shutil.which("python3.10"), str(Path.home() / ".pyenv/versions/3.10.13/bin/python3.10")]
    for candidate in filter(None, candidates):
        try:
            out = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                                 text=True, timeout=30, env={**os.environ, "PYENV_VERSION": "3.10.13"})
        except OSError:
            continue
        if out.returncode == 0 and out.stdout.strip() == "(3, 10)":
            return candidate
    return None


def test_a_real_python_3_10_compiles_every_file():
    interpreter = python310()
    if interpreter is None:
        pytest.skip("no Python 3.10 interpreter on this machine (vermin above still checks)")
    code = ("import pathlib, sys\nbad = []\nfor p in sorted([*pathlib.Path('sage_ros').rglob('*.py'), "
            "*pathlib.Path('launch').glob('*.py')]):\n    try:\n        compile(p.read_text(), str(p), 'exec')\n"
            "    except SyntaxError as e:\n        bad.append(f'{p}: {e}')\nprint(len(bad)); print(*bad, sep='\\n')\n")
    result = subprocess.run([interpreter, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYENV_VERSION": "3.10.13"})
    assert result.returncode == 0 and result.stdout.splitlines()[0] == "0", result.stdout + result.stderr
