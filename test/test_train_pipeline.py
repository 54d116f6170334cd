"""scripts/train_stage.py: every recorded command parses with the real CLI; packing splits and reassembles."""
import importlib.util
import io
import tarfile
from pathlib import Path

import pytest

from sage_ros.cli import build_parser

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def stage():
    spec = importlib.util.spec_from_file_location("train_stage", REPO / "scripts" / "train_stage.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("budget", ["full", "tiny"])
def test_commands_parse(stage, budget, tmp_path):
    cmds = stage.commands(stage.BUDGETS[budget], "cuda", tmp_path, [4, 64])
    assert [name for name, _ in cmds] == ["tinyvae_ablation", "puzzle", "distill"]
    for _name, cmd in cmds:
        argv = cmd[3:]  # drop "python -m sage_ros.cli"
        args = build_parser(argv).parse_args(argv)
        assert args.device == "cuda" and args.steps > 0


def test_pack_splits_without_checkpoints(stage, tmp_path, monkeypatch):
    monkeypatch.setattr(stage, "PART_BYTES", 4096)
    root = tmp_path / "ship"
    (root / "puzzle").mkdir(parents=True)
    (root / "puzzle" / "model.safetensors").write_bytes(__import__("os").urandom(10_000))
    (root / "puzzle" / "checkpoint.pt").write_bytes(b"x" * 100)
    parts = stage.pack(root, "puzzle", tmp_path / "out")
    assert parts[0] == "puzzle.tar.gz.part-aa"
    assert len(parts) == 3 and all((tmp_path / "out" / p).stat().st_size <= 4096 for p in parts)
    joined = b"".join((tmp_path / "out" / p).read_bytes() for p in sorted(parts))
    names = tarfile.open(fileobj=io.BytesIO(joined), mode="r:gz").getnames()
    assert "ship/puzzle/model.safetensors" in names and not any(n.endswith("checkpoint.pt") for n in names)
