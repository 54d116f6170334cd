"""Long offline steps show progress: a tqdm bar naming the running phase (quantize / evaluate / export / ablate),
mirrored into progress.json for the compression_node; --no-progress leaves only progress.json."""
import json
from pathlib import Path

from sage_ros.cli import main
from sage_ros.compression.phases import PhaseBar
from sage_ros.compression.progress import ProgressWriter

REPO = Path(__file__).resolve().parents[1]


def test_each_phase_is_shown_and_written(tmp_path, capsys):
    writer = ProgressWriter(tmp_path, "job", min_interval_s=0)
    with PhaseBar(writer, 2, "job") as bar:
        bar.phase("first part")
        assert json.loads((tmp_path / "progress.json").read_text())["phase"] == "first part"
        bar.phase("second part")
        state = json.loads((tmp_path / "progress.json").read_text())
        assert (state["phase"], state["step"], state["total"]) == ("second part", 1, 2)
    err = capsys.readouterr().err
    assert "job: 2/2 steps" in err and "first part" in err and "second part" in err


def test_quantize_shows_a_bar_unless_told_not_to(tmp_path, capsys):
    argv = ["quantize", "--run", str(REPO / "models" / "tinyvae_l8_fp32"), "--scheme", "int8", "--limit", "8"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "quantize:" in err and "evaluating on bundled/test" in err
    assert main([*argv, "--out", str(tmp_path / "b"), "--no-progress"]) == 0
    assert "steps |" not in capsys.readouterr().err
    assert json.loads((tmp_path / "b" / "progress.json").read_text())["done"]
