"""compression_node without DDS: workspace confinement rules, job files, and config / launch defaults = code's."""
import ast
import os
import sys

import pytest
import yaml

from bag_helpers import REPO
from sage_ros.compression.jobs import JobSpecError, job_argv
from sage_ros.ros.compression_node import PARAMETERS, load_job
from sage_ros.ros.workspace import WorkspaceError, confine, confine_spec, workspace_root


@pytest.fixture
def root(tmp_path):
    (tmp_path / "ws" / "inside").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "ws" / "link_out")
    os.symlink(tmp_path / "ws" / "inside", tmp_path / "ws" / "link_in")
    return workspace_root(tmp_path / "ws")


@pytest.mark.parametrize("path", ["inside", "inside/new/file.pt", "./inside/../x", "link_in/a", "."])
def test_paths_inside_are_accepted(root, path):
    assert confine(root, path).is_relative_to(root)


@pytest.mark.parametrize("path", ["..", "../elsewhere", "inside/../../elsewhere", "/etc/passwd", "link_out/x",
                                  "~/x", "", "a\x00b"])
def test_paths_leading_outside_are_refused(root, path):
    with pytest.raises(WorkspaceError):
        confine(root, path)


def test_absolute_path_inside_is_fine_and_missing_workspace_is_an_error(root, tmp_path):
    assert confine(root, str(root / "inside" / "f")) == root / "inside" / "f"
    with pytest.raises(WorkspaceError, match="not an existing directory"):
        workspace_root(tmp_path / "missing")
    with pytest.raises(WorkspaceError, match="empty"):
        workspace_root("")


def test_spec_values_that_name_paths_are_confined(root):
    spec = confine_spec(root, {"job": "train", "run_dir": "runs/a", "args": {"arch": "TinyVAE", "data-path": "inside"},
                               "extra": ["--out=inside/x", "fp32"]})
    assert spec["run_dir"] == str(root / "runs/a") and spec["args"]["data-path"] == str(root / "inside")
    assert spec["args"]["arch"] == "TinyVAE" and spec["extra"] == [f"--out={root / 'inside/x'}", "fp32"]
    for bad in ({"run_dir": "/tmp"}, {"args": {"x": "../y"}}, {"args": ["--out=/etc/x"]}, {"args": {"bag": "link_out"}}):
        with pytest.raises(WorkspaceError):
            confine_spec(root, bad)


def test_job_files_are_checked_and_turned_into_a_sage_ros_command(root):
    (root / "job.yaml").write_text(yaml.safe_dump({"job": "quantize", "args": {"scheme": "int4", "group-size": 64,
                                                                               "no-eval": True, "topic": None}}, sort_keys=False))
    spec = load_job(root, "job.yaml")
    assert spec["run_dir"] == str(root / "runs/quantize")
    assert job_argv(spec) == [sys.executable, "-m", "sage_ros.cli", "quantize", "--run-dir", str(root / "runs/quantize"),
                              "--scheme", "int4", "--group-size", "64", "--no-eval"]
    (root / "bad.yaml").write_text("job: format_disk\n")
    with pytest.raises(JobSpecError, match="job must be one of"):
        load_job(root, "bad.yaml")
    with pytest.raises(JobSpecError, match="does not exist"):
        load_job(root, "missing.yaml")


def test_config_file_and_launch_defaults_equal_the_code_defaults():
    config = yaml.safe_load((REPO / "config/compression.yaml").read_text())["/**/compression_node"]["ros__parameters"]
    assert config == {name: default for name, (default, *_rest) in PARAMETERS.items()}
    launch = ast.parse((REPO / "launch/compression.launch.py").read_text())
    declared = {node.args[0].value: {kw.arg: getattr(kw.value, "value", None) for kw in node.keywords}
                for node in ast.walk(launch) if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument"}
    assert declared["job_file"]["default_value"] == PARAMETERS["job_file"][0]
    assert declared["autostart"]["default_value"] == str(PARAMETERS["autostart"][0]).lower()
    assert "default_value" not in declared["workspace"]  # required: no silent default workspace
