"""Issue #11 finding 4 without DDS: the job allow-list agrees with the verbs' real parsers, and hostile job files
are refused with a JobSpecError (a clear service answer), never another exception."""
import argparse
import time

import pytest

from sage_ros.cli import build_parser
from sage_ros.compression.jobs import ALLOWED_OPTIONS, JobSpecError, job_argv, load_spec, read_job_file


def _actions(verb):
    parser = build_parser([verb])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[verb]
    return {option.lstrip("-"): action for action in sub._actions for option in action.option_strings}


@pytest.mark.parametrize("verb", sorted(ALLOWED_OPTIONS))
def test_every_allowed_option_is_a_real_option_of_its_kind(verb):
    actions = _actions(verb)
    for name, kind in ALLOWED_OPTIONS[verb].items():
        assert name in actions, f"{verb} --{name} is allow-listed but the parser has no such option"
        action = actions[name]
        if kind == "flag":
            assert action.nargs == 0, (verb, name)
        elif kind == "values":
            assert action.nargs == "+", (verb, name)
        elif kind == "paths":
            assert isinstance(action, argparse._AppendAction), (verb, name)
        else:
            assert action.nargs is None, (verb, name)
    assert "run-dir" in actions or "out" in actions


@pytest.mark.parametrize("args, words", [
    ({"run-dir=/tmp/x": True}, "not an option name"),
    ({"run_dir /tmp/x": True}, "not an option name"),
    ({"output": "/tmp"}, "not allowed for a train job"),
    ({"steps": "--run-dir=/tmp/x"}, "starts with '-'"),
    ({"no-progress": "yes"}, "is a flag"),
    ({"steps": [1, 2]}, "takes one value"),
])
def test_hostile_args_are_refused(args, words):
    with pytest.raises(JobSpecError, match=words):
        job_argv({"job": "train", "args": args})


def test_spellings_of_one_option_give_one_argv():
    for key in ("data_path", "data-path", "--data-path", "--data_path"):
        assert job_argv({"job": "train", "run_dir": "r", "args": {key: "d"}}, python="py")[-2:] == ["--data-path", "d"]
    assert job_argv({"job": "train", "args": {"lr": -0.5}}, python="py")[-2:] == ["--lr", "-0.5"]  # a number is fine


def test_bad_bytes_aliases_and_size(tmp_path):
    (tmp_path / "latin1.yaml").write_bytes(b"job: train\nargs: {topic: caf\xe9}\n")
    with pytest.raises(JobSpecError, match="not UTF-8"):
        load_spec(tmp_path / "latin1.yaml")
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]" for i in range(9)]
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n")
    started = time.perf_counter()
    with pytest.raises(JobSpecError, match="aliases"):
        read_job_file(tmp_path / "bomb.yaml")
    assert time.perf_counter() - started < 0.5
    (tmp_path / "big.yaml").write_text("job: train\n#" + "x" * 70_000)
    with pytest.raises(JobSpecError, match="larger than"):
        read_job_file(tmp_path / "big.yaml")
    (tmp_path / "deep.yaml").write_text("[" * 20_000)
    with pytest.raises(JobSpecError):
        read_job_file(tmp_path / "deep.yaml")
