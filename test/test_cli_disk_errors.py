"""A full disk or a read-only / missing output path anywhere in the CLI is one line naming the path and errno.

Before (9ec98e2): `sage-ros export / quantize / evaluate --out` on a read-only or full filesystem ended in a Python
traceback. Now cli.main turns an OSError of the disk (ENOSPC, EROFS, EACCES, ENOENT, ...) into
`sage-ros <verb>: error: <path>: <reason> (errno N NAME)`, exit 1; sage_ros.atomic names the file a failed write()
was for. Real faults on a tmpfs where this process may mount one (skipped with the reason elsewhere), and a
patched writer that needs no privileges.
"""
import errno

import pytest
import torch

from bag_helpers import small_tmpfs
from quant_helpers import untrained_run
from sage_ros.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return untrained_run(tmp_path_factory.mktemp("disk_errors") / "run")


def _one_line(err: str, verb: str, *needles: str) -> None:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"sage-ros {verb}: error: "), err
    for needle in needles:
        assert needle in lines[0], err


VERBS = {
    "export": ["export", "--precision", "fp32", "--no-verify"],
    "quantize": ["quantize", "--scheme", "int8", "--no-eval"],
    "evaluate": ["evaluate", "--data", "synthetic", "--limit", "4", "--no-pca"],
}


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_a_read_only_output_is_one_line(run_dir, tmp_path, capsys, verb):
    with small_tmpfs(tmp_path / "ro", "1m", read_only=True) as disk:
        args = VERBS[verb]
        code = main([args[0], "--run", str(run_dir), "--out", str(disk / "out"), "--no-progress", *args[1:]])
        assert code == 1
        _one_line(capsys.readouterr().err, verb, str(disk), "errno 30 EROFS")


@pytest.mark.parametrize("verb", ["export", "quantize"])
def test_a_full_disk_is_one_line_and_leaves_no_half_output(run_dir, tmp_path, capsys, verb):
    with small_tmpfs(tmp_path / "disk", "64k") as disk:
        args = VERBS[verb]
        code = main([args[0], "--run", str(run_dir), "--out", str(disk / "out"), "--no-progress", *args[1:]])
        assert code == 1
        _one_line(capsys.readouterr().err, verb, str(disk), "errno 28 ENOSPC")
        assert list(disk.iterdir()) == []


def test_a_write_error_without_a_file_name_is_named_after_its_file(run_dir, tmp_path, capsys, monkeypatch):
    """A failed write() on an open file carries no file name: atomic_path adds the one being written."""
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("safetensors.torch.save_file", full)
    code = main(["quantize", "--run", str(run_dir), "--out", str(tmp_path / "out"), "--scheme", "int8", "--no-eval", "--no-progress"])
    assert code == 1
    _one_line(capsys.readouterr().err, "quantize", str(tmp_path / "out" / "model.int8.safetensors"), "ENOSPC")
    assert not (tmp_path / "out").exists()


def test_an_os_error_that_is_not_the_disk_s_still_raises(run_dir, tmp_path, monkeypatch):
    from sage_ros.compression import export_cmd

    def broken(args):
        raise OSError(errno.ENAMETOOLONG, "File name too long", "x" * 10)

    monkeypatch.setattr(export_cmd, "run", broken)
    with pytest.raises(OSError):  # not a disk error: the traceback says where the bug is
        main(["export", "--run", str(run_dir), "--precision", "fp32", "--out", str(tmp_path / "o")])
