"""Output directories are replaced whole or not at all (sage_ros.atomic.atomic_output_dir / output_dir).

Before (9ec98e2): `sage-ros export --out <bundle in use>` deleted the old bundle's files first, so an export that
failed or was cancelled left an empty (or half-written) directory: a re-set of `bundle` was refused and a fresh
encoder exited 1; a failed quantize / evaluate left an --out holding only progress.json. Now export writes into
a sibling staging directory that is swapped in (renameat2 RENAME_EXCHANGE) once complete and verified, and a
failed quantize / evaluate removes an --out it created.
"""
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sage_ros.atomic import atomic_output_dir, output_dir
from quant_helpers import untrained_run
from sage_ros.cli import main
from sage_ros.runtime.bundle import load_bundle

REPO = Path(__file__).resolve().parents[1]


def _entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _fill(directory: Path, tag: str, count: int = 20) -> None:
    for i in range(count):
        (directory / f"{tag}{i:02d}").write_text(tag)


def test_a_directory_is_swapped_whole_and_an_observer_never_sees_it_absent_or_mixed(tmp_path):
    """The path always names a directory, never one holding old and new files together. (A reader that opened the
    old directory before the swap sees its files go as it is deleted, as with any replacement.)"""
    out = tmp_path / "out"
    out.mkdir()
    _fill(out, "old")
    old, new = _entries(out), [f"new{i:02d}" for i in range(20)]
    seen, stop = [], threading.Event()

    def observe():
        while not stop.is_set():
            try:
                seen.append(set(os.listdir(out)))
            except FileNotFoundError:
                seen.append({"<absent>"})

    watcher = threading.Thread(target=observe)
    watcher.start()
    try:
        for _ in range(20):
            with atomic_output_dir(out) as staging:
                _fill(staging, "new")
            with atomic_output_dir(out) as staging:
                _fill(staging, "old")
    finally:
        stop.set()
        watcher.join()
    assert len(seen) > 100
    assert all(names <= set(old) or names <= set(new) for names in seen), \
        [names for names in seen if not (names <= set(old) or names <= set(new))][:3]
    assert sum(names in (set(old), set(new)) for names in seen) > 0.5 * len(seen)
    assert _entries(out) == old and _entries(tmp_path) == ["out"]  # no staging directory left


def test_a_failure_leaves_the_old_directory_and_creates_nothing_new(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    _fill(out, "old", 3)
    with pytest.raises(RuntimeError):
        with atomic_output_dir(out) as staging:
            _fill(staging, "new", 2)
            raise RuntimeError("export failed half-way")
    assert _entries(out) == ["old00", "old01", "old02"] and _entries(tmp_path) == ["out"]
    with pytest.raises(KeyboardInterrupt):
        with atomic_output_dir(tmp_path / "fresh") as staging:
            _fill(staging, "new", 2)
            raise KeyboardInterrupt
    assert _entries(tmp_path) == ["out"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        with atomic_output_dir(tmp_path / "file"):
            pass


def test_sigterm_cancels_cleanly_and_a_killed_writer_s_leftovers_are_swept(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    _fill(out, "old", 3)
    script = ("import sys, time\nfrom sage_ros.atomic import atomic_output_dir\n"
              "with atomic_output_dir(sys.argv[1]) as staging:\n"
              "    (staging / 'half').write_text('x')\n    print('ready', flush=True)\n    time.sleep(60)\n")
    for sig, code in ((signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGKILL, -signal.SIGKILL)):
        child = subprocess.Popen([sys.executable, "-c", script, str(out)], cwd=REPO, stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"
        child.send_signal(sig)
        assert child.wait(timeout=30) == code
        assert _entries(out) == ["old00", "old01", "old02"]
    assert len(_entries(tmp_path)) == 2  # the SIGKILLed child's staging directory stays until ...
    with atomic_output_dir(out) as staging:  # ... the next writer of `out` sweeps it
        _fill(staging, "new", 1)
    assert _entries(tmp_path) == ["out"] and _entries(out) == ["new00"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return untrained_run(tmp_path_factory.mktemp("atomic_export") / "run")


def test_export_into_a_bundle_in_use_keeps_it_whole_when_the_export_fails(run_dir, tmp_path, monkeypatch):
    from sage_ros.compression import export_cmd

    bundle = tmp_path / "bundle"
    assert main(["export", "--run", str(run_dir), "--precision", "fp32", "--out", str(bundle), "--no-verify"]) == 0
    before = {p.name: p.read_bytes() for p in bundle.iterdir()}
    (bundle / ".engine_cache").mkdir()
    (bundle / ".engine_cache" / "encoder-abc.engine").write_bytes(b"engine")
    (bundle / "model.int8.safetensors").write_bytes(b"stale file of an earlier export")
    real_export_any = export_cmd.export_any

    def export_then_fail(model, out, args):
        real_export_any(model, out, args)
        raise RuntimeError("cancelled after writing the graphs")

    monkeypatch.setattr(export_cmd, "export_any", export_then_fail)
    with pytest.raises(RuntimeError, match="cancelled"):
        main(["export", "--run", str(run_dir), "--precision", "fp16", "--out", str(bundle), "--no-verify"])
    load_bundle(bundle)  # still the complete old bundle: a re-set of `bundle` or a fresh encoder would accept it
    assert all((bundle / name).read_bytes() == data for name, data in before.items())
    assert _entries(tmp_path) == ["bundle"]
    monkeypatch.setattr(export_cmd, "export_any", real_export_any)

    assert main(["export", "--run", str(run_dir), "--precision", "fp16", "--out", str(bundle), "--no-verify"]) == 0
    assert load_bundle(bundle).precision == "fp16" and load_bundle(bundle).meta["name"] == "bundle"
    assert not (bundle / "model.int8.safetensors").exists()  # nothing of the old export mixed into the new one
    assert (bundle / ".engine_cache" / "encoder-abc.engine").read_bytes() == b"engine"  # the device's cache kept
    assert _entries(tmp_path) == ["bundle"]


@pytest.mark.parametrize("verb", [["quantize", "--scheme", "int8", "--no-eval"], ["evaluate"]])
def test_a_failed_quantize_or_evaluate_leaves_no_out_it_created(verb, tmp_path):
    broken = tmp_path / "broken_run"  # a run directory whose model.json is not JSON: refused after parsing
    broken.mkdir()
    (broken / "model.json").write_text("{")
    (broken / "model.safetensors").write_bytes(b"")
    out = tmp_path / "out"
    assert main([verb[0], "--run", str(broken), "--out", str(out), "--no-progress", *verb[1:]]) != 0
    assert not out.exists()
    out.mkdir()  # compression_node makes the run directory (job.log) first: it stays as it was
    (out / "job.log").write_text("")
    assert main([verb[0], "--run", str(broken), "--out", str(out), "--no-progress", *verb[1:]]) != 0
    assert (out / "job.log").is_file()


def test_output_dir_removes_only_what_it_created(tmp_path):
    with pytest.raises(ValueError):
        with output_dir(tmp_path / "new") as path:
            (path / "partial").write_text("x")
            raise ValueError
    assert not (tmp_path / "new").exists()
    with output_dir(tmp_path / "ok") as path:
        (path / "result").write_text("x")
    assert _entries(tmp_path / "ok") == ["result"]
