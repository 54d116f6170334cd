"""Every `sage-ros` verb answers a user's mistake with one line on stderr that names the argument, exit 2 for a
bad command line and 1 for a failure while working, never a traceback, and leaves no output directory behind.

Table-driven: each verb that takes paths x each kind of bad input (missing path, wrong kind of directory, bundle
typo, unreadable file, output where a file is). Run in-process through sage_ros.cli.main (each case fails before
any heavy work); one case also runs as a real process, to see the real stderr.
"""
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from sage_ros.cli import USER_ERRORS, build_parser, main

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    base = tmp_path_factory.mktemp("cli_errors")
    (base / "empty").mkdir()
    (base / "a_file.txt").write_text("not a model, not a bag\n")
    run = base / "garbage_run"  # a run directory whose weights file is not safetensors
    run.mkdir()
    (run / "model.json").write_text('{"format": "sage_ros.model/1", "architecture": "TinyVAE", "latent_dim": 8}')
    (run / "model.safetensors").write_bytes(b"\x00\x01 this is not a safetensors file" * 8)
    bad = base / "bad_bundle"
    bad.mkdir()
    (bad / "bundle.json").write_text("{ not json")
    return {"missing": base / "no_such_thing", "empty": base / "empty", "file": base / "a_file.txt",
            "garbage_run": run, "bad_bundle": bad, "models": MODELS, "base": base}


FP32 = "{models}/tinyvae_l8_fp32"
# (case id, argv, exit code, words the one line must hold)
CASES = [
    ("train: --run-dir is a file", ["train", "--run-dir", "{file}"], 2, "--run-dir"),
    ("train: unknown architecture", ["train", "--arch", "TinyVAE64", "--run-dir", "{out}"], 2, "--arch"),
    ("train: missing data folder", ["train", "--data", "folder", "--data-path", "{missing}", "--steps", "1",
                                    "--run-dir", "{out}"], 1, "not found"),
    ("train: zero batch size", ["train", "--batch-size", "0", "--run-dir", "{out}"], 2, "--batch-size"),
    ("train: value the config refuses", ["train", "--ema", "1.5", "--run-dir", "{out}"], 2, "--ema"),
    ("train: latent size out of range", ["train", "--latent-dim", "5000", "--run-dir", "{out}"], 2, "--latent-dim"),
    ("distill: negative loss weight", ["distill", "--w-rec", "-1", "--run-dir", "{out}"], 2, "--w-rec"),
    ("ablate: latent size out of range", ["ablate", "--latents", "8", "5000", "--run-dir", "{out}"], 2,
     "--latents"),
    ("quantize: negative --limit", ["quantize", "--run", FP32, "--scheme", "int8", "--limit", "-3", "--out", "{out}"],
     2, "--limit"),
    ("distill: missing teacher", ["distill", "--teacher", "{missing}", "--run-dir", "{out}"], 2, "--teacher"),
    ("distill: missing vgg16 weights", ["distill", "--vgg16-weights", "{missing}", "--run-dir", "{out}"], 2,
     "--vgg16-weights"),
    ("ablate: --run-dir is a file", ["ablate", "--run-dir", "{file}"], 2, "--run-dir"),
    ("quantize: missing --run", ["quantize", "--run", "{missing}", "--scheme", "int8", "--out", "{out}"], 2, "--run"),
    ("quantize: --run is not a run", ["quantize", "--run", "{empty}", "--scheme", "int8", "--out", "{out}"], 2,
     "not a trained run"),
    ("quantize: unreadable weights", ["quantize", "--run", "{garbage_run}", "--scheme", "int8", "--out", "{out}"], 1,
     "cannot read"),
    ("quantize: quantized bundle as --run", ["quantize", "--run", "{models}/tinyvae_l64_int8", "--scheme", "int8",
                                             "--out", "{out}"], 1, "quantized weights"),
    ("quantize: --out is a file", ["quantize", "--run", FP32, "--scheme", "int8", "--out", "{file}"], 2, "--out"),
    ("quantize: missing --scheme", ["quantize", "--run", FP32, "--out", "{out}"], 2, "--scheme"),
    ("evaluate: nothing to evaluate", ["evaluate", "--out", "{out}"], 2, "--run"),
    ("evaluate: missing --run", ["evaluate", "--run", "{missing}", "--out", "{out}"], 2, "--run"),
    ("evaluate: bundle name typo", ["evaluate", "--bundle", "tinyvae_l64_fp23", "--out", "{out}"], 2,
     "did you mean tinyvae_l64_fp32"),
    ("evaluate: run directory as --bundle", ["evaluate", "--bundle", "{garbage_run}", "--out", "{out}"], 2,
     "export one first"),
    ("evaluate: directory of bundles", ["evaluate", "--bundle", "{models}", "--out", "{out}"], 2,
     "directory of bundles"),
    ("evaluate: file outside a bundle", ["evaluate", "--bundle", "{file}", "--out", "{out}"], 2, "--bundle"),
    ("evaluate: corrupt bundle.json", ["evaluate", "--bundle", "{bad_bundle}", "--out", "{out}"], 1,
     "not valid JSON"),
    ("evaluate: puzzle bundle beside a TinyVAE run", ["evaluate", "--run", FP32, "--bundle", "puzzle_l64_fp32",
                                                      "--out", "{out}"], 2, "same kind of model"),
    ("export: missing --run", ["export", "--run", "{missing}", "--precision", "fp32", "--out", "{out}"], 2, "--run"),
    ("export: unreadable weights", ["export", "--run", "{garbage_run}", "--precision", "fp32", "--out", "{out}"], 1,
     "cannot read"),
    ("export: missing --metrics", ["export", "--run", FP32, "--precision", "fp32", "--out", "{out}", "--metrics",
                                   "{missing}"], 2, "--metrics"),
    ("bag encode: missing input bag", ["bag", "encode", "{missing}", "{out}", "--bundle", "tinyvae_l8_fp32"], 2, "IN"),
    ("bag encode: bundle name typo", ["bag", "encode", "{empty}", "{out}", "--bundle", "tinyvae_l64_fp23"], 2,
     "did you mean"),
    ("bag encode: run directory as --bundle", ["bag", "encode", "{empty}", "{out}", "--bundle", "{garbage_run}"], 2,
     "export one first"),
    ("bag encode: not a bag", ["bag", "encode", "{empty}", "{out}", "--bundle", "tinyvae_l8_fp32"], 1, "bag"),
    ("bag play: missing bag", ["bag", "play", "{missing}"], 2, "no such file"),
    ("bag play: not a bag", ["bag", "play", "{empty}"], 1, "cannot open bag"),
    ("bag record: output is a file", ["bag", "record", "{file}", "--topics", "/x", "--duration", "0.1"], 1,
     "exists already"),
    ("bag recover: missing bag", ["bag", "recover", "{missing}", "{out}"], 2, "no such file"),
    ("bench: no checkout", ["bench", "--repo", "{missing}"], 2, "run_all.py not found"),
    ("demo: --out is a file", ["demo", "--out", "{file}"], 2, "--out"),
    ("demo: missing bag", ["demo", "--bag", "{missing}", "--out", "{out}"], 2, "--bag"),
    ("demo: missing --models", ["demo", "--bag", "{empty}", "--models", "{missing}", "--out", "{out}"], 1,
     "models directory"),
    ("demo: no bundles in --models", ["demo", "--bag", "{empty}", "--models", "{empty}", "--out", "{out}"], 1,
     "no TinyVAE bundle"),
]


def run_cli(argv, capsys) -> tuple[int, str]:
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case, argv, code, words", CASES, ids=[c[0] for c in CASES])
def test_a_mistake_gets_one_line_and_leaves_nothing(case, argv, code, words, paths, capsys):
    out = paths["base"] / ("out_" + "".join(c if c.isalnum() else "_" for c in case))
    argv = [a.format(out=out, **paths) for a in argv]
    got, err = run_cli(argv, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, f"{case}: expected one line on stderr, got:\n{err}"
    verb = " ".join(argv[:2] if argv[0] == "bag" else argv[:1])
    assert lines[0].startswith(f"sage-ros {verb}: error: "), lines[0]
    assert words in lines[0], lines[0]
    assert got == code, f"{case}: exit {got}, expected {code}: {lines[0]}"
    assert not out.exists(), f"{case}: left {out} behind"


def test_a_real_process_prints_one_line_and_no_traceback(paths):
    out = paths["base"] / "process_out"
    done = subprocess.run([sys.executable, "-m", "sage_ros.cli", "quantize", "--run", str(paths["garbage_run"]),
                           "--scheme", "int8", "--out", str(out)], capture_output=True, text=True, timeout=120,
                          cwd=REPO)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "cannot read" in done.stderr
    assert not out.exists()


def test_a_bug_keeps_its_traceback(monkeypatch, paths):
    """Only the listed user-error types become one line: an unexpected exception is a bug and propagates."""
    from sage_ros.compression import quantize_cmd

    def broken(path):
        raise KeyError("a bug, not a mistake")
    monkeypatch.setattr(quantize_cmd, "load_float_model", broken)
    with pytest.raises(KeyError):
        main(["quantize", "--run", str(MODELS / "tinyvae_l8_fp32"), "--scheme", "int8",
              "--out", str(paths["base"] / "bug_out")])


@pytest.mark.parametrize("module", sorted(USER_ERRORS))
def test_every_user_error_type_still_exists(module):
    """A module moved or an exception renamed would silently turn one-line errors back into tracebacks."""
    mod = importlib.import_module(module)
    for name in USER_ERRORS[module]:
        assert isinstance(getattr(mod, name, None), type) and issubclass(getattr(mod, name), Exception), \
            f"{module}.{name}"


@pytest.mark.parametrize("argv, dest, value, new", [
    (["train", "--model", "TinyVAE32"], "arch", "TinyVAE32", "--arch"),
    (["quantize", "--model", "runs/x", "--scheme", "int8", "--out", "o"], "run", None, "--run"),
    (["bag", "encode", "IN", "OUT", "--model", "tinyvae_l8_fp32", "--crop", "center"], "crop", "center",
     "--crop-mode"),
])
def test_old_spellings_still_work_with_a_one_line_warning(argv, dest, value, new, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "IN").mkdir()
    (tmp_path / "runs" / "x").mkdir(parents=True)
    (tmp_path / "runs" / "x" / "model.json").write_text("{}")
    args = build_parser(argv).parse_args(argv)
    err = capsys.readouterr().err
    assert "deprecated" in err and f"use {new}" in err and "Traceback" not in err, err
    if value is not None:
        assert getattr(args, dest) == value
    else:
        assert Path(getattr(args, dest)) == Path("runs/x")


def test_a_terminated_run_leaves_no_output_directory(tmp_path):
    """SIGTERM (a job cancelled, a shell killed) unwinds like Ctrl-C, so the --out it created goes too."""
    import signal
    import time

    out = tmp_path / "eval"
    proc = subprocess.Popen([sys.executable, "-m", "sage_ros.cli", "evaluate", "--bundle", "tinyvae_l8_fp32",
                             "--out", str(out), "--no-progress"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert out.exists(), "evaluate never created --out"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err, err
    assert not out.exists()


def test_a_signal_inside_a_lazy_import_still_exits_as_the_signal(monkeypatch, tmp_path):
    """SIGTERM landing while a C extension initialises (onnxruntime's import) reaches Python as an ImportError
    raised from the SystemExit: the CLI exits with the signal's code, not a traceback of the import."""
    import signal

    from sage_ros.compression import evaluate_cmd

    def interrupted_import(args):
        try:
            raise SystemExit(128 + signal.SIGTERM)
        except SystemExit as exc:
            raise ImportError("initialization failed") from exc

    monkeypatch.setattr(evaluate_cmd, "run", interrupted_import)
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--bundle", "tinyvae_l8_fp32", "--out", str(tmp_path / "eval"), "--no-progress"])
    assert exit_info.value.code == 128 + signal.SIGTERM
