"""What every `sage-ros` verb shares about its command line: usage errors, renamed options, path arguments.

No torch, no rclpy: verbs import this while their parser is built. The rule (enforced by
test/test_cli_errors.py): a user's mistake ends in one line on stderr naming the argument and the fix, exit 2 for
a bad command line (caught before any work) and exit 1 for a failure while working; never a traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


class UsageError(ValueError):
    """A bad command-line value found after parsing (exit 2, one line). The message names the option."""


def warn(prog: str, message: str) -> None:
    print(f"{prog}: warning: {message}", file=sys.stderr, flush=True)


def renamed(*old: str, base: type[argparse.Action] = argparse._StoreAction) -> type[argparse.Action]:
    """An argparse action for an option whose old spellings `old` still work for one release, with a warning.

        parser.add_argument("--run", "--model", action=renamed("--model"), ...)
    """

    class Renamed(base):
        def __call__(self, parser, namespace, values, option_string=None):
            if option_string in old:
                warn(parser.prog, f"{option_string} is deprecated, use {self.option_strings[0]} (the old spelling "
                                  "is removed in the next release)")
            super().__call__(parser, namespace, values, option_string)

    Renamed.__name__ = f"Renamed{base.__name__}"
    return Renamed


def _number(text: str, kind: type, lowest: float, strict: bool, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if value != value or (value <= lowest if strict else value < lowest):  # NaN, or out of range
        raise argparse.ArgumentTypeError(f"{text} must be {what}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _number(text, int, 0, True, "an integer >= 1")


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (0 usually meaning off / all)."""
    return _number(text, int, 0, False, "an integer >= 0")


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    return _number(text, float, 0.0, True, "a number > 0")


def non_negative_float(text: str) -> float:
    """argparse type: a number >= 0."""
    return _number(text, float, 0.0, False, "a number >= 0")


def existing_path(text: str) -> Path:
    """argparse type: a path that exists (file or directory)."""
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such file or directory")
    return path


def existing_file(text: str) -> Path:
    """argparse type: an existing, readable file."""
    path = existing_path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; give a file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"{text}: cannot be read ({exc.strerror})") from None
    return path


def existing_dir(text: str) -> Path:
    """argparse type: an existing directory."""
    path = existing_path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; give a directory")
    return path


def new_output(text: str) -> Path:
    """argparse type: an output path whose parent can hold it (not an existing file)."""
    path = Path(text).expanduser()
    if path.is_file():
        raise argparse.ArgumentTypeError(f"{text} is an existing file; give a directory to write into")
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {parent} is a file, so nothing can be written under it")
    return path


def model_source(text: str) -> Path:
    """argparse type of --run: a trained run directory, its model.safetensors, or a bundle directory holding float
    weights (model.safetensors + bundle.json). Only the kind is checked here (cheaply); loading comes later."""
    path = existing_path(text)
    if path.is_dir():
        if (path / "model.json").is_file() or (path / "model.safetensors").is_file():
            return path
        if (path / "bundle.json").is_file():
            return path  # a bundle: whether its weights are float is said when it is loaded
        hint = ""
        runs = sorted(p.parent.name for p in path.glob("*/model.json"))
        if runs:
            hint = f" (runs inside it: {', '.join(runs[:5])}{' ...' if len(runs) > 5 else ''})"
        raise argparse.ArgumentTypeError(
            f"{text} is not a trained run (no model.json / model.safetensors) nor a bundle (no bundle.json){hint}; "
            "give the --run-dir of `sage-ros train` or a bundle directory")
    if path.suffix != ".safetensors":
        raise argparse.ArgumentTypeError(f"{text} is not a .safetensors file; give a run directory or its "
                                         "model.safetensors")
    return path


def bundle_dir(text: str) -> Path:
    """argparse type of --bundle: a shipped bundle name, a bundle directory or a file inside one."""
    from sage_ros.runtime.bundle import BundleError, resolve_bundle_path
    from sage_ros.runtime.consumer import shipped_model_dirs

    try:
        return resolve_bundle_path(text, shipped_model_dirs())
    except BundleError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
