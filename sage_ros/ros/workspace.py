"""Keep every path a compression job touches inside one workspace directory (no rclpy, no torch).

The compression_node runs jobs on request over ROS services; without this a service call could become an
arbitrary file read or write. Rules: relative paths are taken relative to the workspace; after resolving `..`
and symlinks (Path.resolve) the result must be the workspace or below it. Absolute paths inside the workspace
are accepted; anything else raises WorkspaceError with the offending value and where it leads.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# Job-spec keys whose string values are always paths. Other strings are checked when they look like paths; a bare
# name ("model.safetensors") is safe as it is, because jobs run with the workspace as their working directory.
PATH_KEYS = {"job_file", "run_dir", "out", "out_dir", "output", "data_path", "bag", "checkpoint", "vgg_weights"}


class WorkspaceError(ValueError):
    """A path (or a job-spec value that names a path) leads outside the workspace."""


def workspace_root(path: str | os.PathLike) -> Path:
    if not str(path):
        raise WorkspaceError("the workspace parameter is empty; set it to the directory jobs may use")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise WorkspaceError(f"workspace {str(path)!r} is not an existing directory")
    return root.resolve()


def confine(root: Path, value: str | os.PathLike, what: str = "path") -> Path:
    """`value` resolved against `root` (symlinks and '..' followed); WorkspaceError unless it stays inside."""
    text = str(value)
    if not text or "\x00" in text:
        raise WorkspaceError(f"{what} {text!r} is not a usable path")
    if text.startswith("~"):
        raise WorkspaceError(f"{what} {text!r}: home-relative paths are outside the workspace {root}")
    resolved = (root / text).resolve()  # root / absolute == absolute
    if resolved != root and root not in resolved.parents:
        raise WorkspaceError(f"{what} {text!r} resolves to {resolved}, outside the workspace {root}; refused")
    return resolved


def looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or text.startswith((".", "~"))


def confine_spec(root: Path, spec: Any, where: str = "job") -> Any:
    """A copy of a job spec (dicts / lists / scalars) with every path value made absolute inside `root`.

    Values under PATH_KEYS are paths; other strings are paths when they look like one ('/', '\\', leading '.'
    or '~'); command-line style '--opt=VALUE' strings have VALUE checked. Anything leading outside raises.
    """
    if isinstance(spec, dict):
        return {key: _confine_value(root, key, value, f"{where}.{key}") for key, value in spec.items()}
    if isinstance(spec, list):
        return [confine_spec(root, item, f"{where}[{i}]") for i, item in enumerate(spec)]
    if isinstance(spec, str):
        return _confine_string(root, spec, where, always=False)
    return spec


def _confine_value(root: Path, key: str, value: Any, where: str) -> Any:
    if isinstance(value, str):
        return _confine_string(root, value, where, always=key.replace("-", "_") in PATH_KEYS)
    return confine_spec(root, value, where)


def _confine_string(root: Path, text: str, where: str, always: bool) -> str:
    if text.startswith("-") and "=" in text:  # --out=/etc/x
        option, _, value = text.partition("=")
        return f"{option}={_confine_string(root, value, where, always)}"
    if always or looks_like_path(text):
        return str(confine(root, text, where))
    return text
