"""compression_node over real DDS: start, progress, cancel, completion, and refusal of paths outside the workspace."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from std_srvs.srv import Trigger

from bag_helpers import REPO, spin_until
from ros_helpers import resend_until_reply

LONG_JOB = {"job": "train", "run_dir": "runs/long",
            "args": {"arch": "TinyVAE", "latent-dim": 4, "data": "synthetic", "steps": 100000, "batch-size": 4,
                     "checkpoint-every": 100000, "no-progress": True}}
SHORT_JOB = {"job": "train", "run_dir": "runs/short",
             "args": {"arch": "TinyVAE", "latent-dim": 4, "data": "synthetic", "steps": 3, "batch-size": 4,
                      "no-progress": True}}


class Client:
    """Service / parameter clients and a progress listener for the node under test."""

    def __init__(self, context):
        self.node = rclpy.create_node("compression_node_client", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.start = self.node.create_client(Trigger, "/compression_node/start")
        self.cancel = self.node.create_client(Trigger, "/compression_node/cancel")
        self.params = AsyncParameterClient(self.node, "compression_node")
        self.progress = []
        self.node.create_subscription(DiagnosticStatus, "/compression_node/progress", self.progress.append, 10)

    def call(self, client, timeout=30.0):
        assert client.wait_for_service(timeout_sec=timeout), client.srv_name
        future = client.call_async(Trigger.Request())
        self.executor.spin_until_future_complete(future, timeout_sec=timeout)
        assert future.done(), f"no reply from {client.srv_name} in {timeout} s"
        return future.result()

    def set(self, **values):
        """Set parameters (idempotent: the request is sent again after 5 s without a reply, resend_until_reply)."""
        assert self.params.wait_for_services(timeout_sec=30)
        future = resend_until_reply(
            lambda: self.params.set_parameters([Parameter(k, value=v) for k, v in values.items()]),
            lambda f, seconds: self.executor.spin_until_future_complete(f, timeout_sec=seconds), 30, resend_s=5)
        assert future.done(), f"no reply to set_parameters({values}) in 30 s"
        assert all(r.successful for r in future.result().results), future.result()

    def latest(self) -> dict:
        return {kv.key: kv.value for kv in self.progress[-1].values} if self.progress else {}

    def wait_for(self, predicate, timeout) -> bool:
        """Spin until the latest progress satisfies `predicate`; a failed job ends the wait at once."""
        def done():
            return bool(self.progress) and (predicate(self.latest()) or self.latest()["state"] == "failed")
        return spin_until(self.executor, done, timeout) and predicate(self.latest())


@pytest.fixture
def node_and_client(tmp_path):
    workspace = tmp_path / "ws"
    (workspace / "data").mkdir(parents=True)
    for name, spec in (("long.yaml", LONG_JOB), ("short.yaml", SHORT_JOB)):
        (workspace / name).write_text(yaml.safe_dump(spec))
    node = subprocess.Popen([sys.executable, "-m", "sage_ros.ros.compression_node", "--ros-args",
                             "-p", f"workspace:={workspace}", "-p", "job_file:=long.yaml", "-p", "progress_period:=0.1",
                             "-p", "cancel_timeout:=3.0"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    context = rclpy.context.Context()
    rclpy.init(context=context)
    client = Client(context)
    # The node is up and its endpoints discovered once its first progress message arrives.
    assert client.wait_for(lambda p: p["state"] == "idle", 30), node.poll()
    yield workspace, node, client
    client.node.destroy_node()
    rclpy.shutdown(context=context)
    node.terminate()
    node.communicate(timeout=20)


def test_start_progress_cancel_then_a_job_to_completion(node_and_client):
    pytest.importorskip("torch", reason="the job trains a model (torch)")
    workspace, node, client = node_and_client
    assert client.wait_for(lambda p: p["state"] == "idle", 20)
    reply = client.call(client.start)
    assert reply.success, reply.message
    assert client.wait_for(lambda p: p["state"] == "running" and p["step"] not in ("", "0"), 90), client.latest()
    running = client.latest()
    assert running["job"] == "train" and int(running["total"]) == 100000 and float(running["loss"]) > 0
    assert running["eta_s"] != ""
    maps = Path(f"/proc/{node.pid}/maps").read_text()
    assert "libtorch" not in maps  # the node process never loads torch; the job is its own process
    again = client.call(client.start)
    assert not again.success and "already running" in again.message

    reply = client.call(client.cancel)
    assert reply.success, reply.message
    assert client.wait_for(lambda p: p["state"] == "cancelled", 10), client.latest()
    assert client.progress[-1].level == DiagnosticStatus.WARN
    assert not client.call(client.cancel).success  # nothing left to cancel
    assert int(client.latest()["step"]) < 100000

    client.set(job_file="short.yaml")
    assert client.call(client.start).success
    assert client.wait_for(lambda p: p["state"] == "succeeded", 90), client.latest()
    assert client.latest()["step"] == "3" and client.latest()["done"] == "True"
    assert (workspace / "runs/short/model.safetensors").is_file()


def test_paths_outside_the_workspace_are_refused(node_and_client, tmp_path):
    workspace, _, client = node_and_client
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "job.yaml").write_text(yaml.safe_dump(SHORT_JOB))
    os.symlink(outside, workspace / "escape")
    cases = {
        "../outside/job.yaml": None,  # the job file itself
        str(outside / "job.yaml"): None,
        "escape/job.yaml": None,  # a symlink inside that leads out
        "abs_run_dir.yaml": {**SHORT_JOB, "run_dir": str(outside / "run")},
        "dotdot_data.yaml": {**SHORT_JOB, "args": {**SHORT_JOB["args"], "data": "folder", "data-path": "../outside"}},
        "symlink_out.yaml": {**SHORT_JOB, "run_dir": "escape/run"},
    }
    for job_file, spec in cases.items():
        if spec is not None:
            (workspace / job_file).write_text(yaml.safe_dump(spec))
        client.set(job_file=job_file)
        reply = client.call(client.start)
        assert not reply.success and "refused" in reply.message and "outside the workspace" in reply.message, (job_file, reply.message)
        assert client.wait_for(lambda p: p["state"] == "refused", 10)
    assert client.progress[-1].level == DiagnosticStatus.ERROR
    assert sorted(p.name for p in outside.iterdir()) == ["job.yaml"]  # nothing was written outside
    assert not (workspace / "runs").exists()  # and no refused job started


def test_hostile_job_files_are_answered_and_the_node_stays_up(node_and_client, tmp_path):
    """Issue #11 finding 4: an option key spelled to carry a path ('run-dir=<path>': true) wrote a training run
    outside; a non-UTF-8 job file killed the node; a YAML alias bomb held it for seconds."""
    workspace, node, client = node_and_client
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, workspace / "link_out")
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8))
    files = {
        "key_path.yaml": yaml.safe_dump({**SHORT_JOB, "args": {**SHORT_JOB["args"], f"run-dir={outside}/r": True}}),
        "dash_key.yaml": yaml.safe_dump({**SHORT_JOB, "args": {**SHORT_JOB["args"], "--run-dir": str(outside / "r")}}),
        "unknown_opt.yaml": yaml.safe_dump({**SHORT_JOB, "args": {**SHORT_JOB["args"], "output": str(outside)}}),
        "dash_value.yaml": yaml.safe_dump({**SHORT_JOB, "args": {**SHORT_JOB["args"], "topic": "--run-dir=runs/evil"}}),
        "bare_symlink.yaml": yaml.safe_dump({**SHORT_JOB, "run_dir": "runs/ok",
                                             "args": {**SHORT_JOB["args"], "data": "folder", "data_path": "link_out"}}),
        "alias_bomb.yaml": "job: train\n" + bomb,
    }
    for name, text in files.items():
        (workspace / name).write_text(text)
    (workspace / "latin1.yaml").write_bytes(b"job: train\nargs:\n  topic: caf\xe9\n")
    (workspace / "huge.yaml").write_text("job: train\n# " + "x" * 200_000 + "\n")
    expected = {"key_path.yaml": "not an option name", "dash_key.yaml": "outside the workspace",
                "unknown_opt.yaml": "not allowed for a train job", "dash_value.yaml": "starts with '-'",
                "bare_symlink.yaml": "outside the workspace", "alias_bomb.yaml": "aliases",
                "latin1.yaml": "not UTF-8", "huge.yaml": "larger than"}
    for job_file, words in expected.items():
        client.set(job_file=job_file)
        started = time.monotonic()
        reply = client.call(client.start)
        # Generous on a loaded CI machine; walking the alias bomb's 9**9 leaves unguarded takes minutes.
        assert time.monotonic() - started < 10.0, job_file
        assert not reply.success and "refused" in reply.message and words in reply.message, (job_file, reply.message)
        assert node.poll() is None, job_file  # still up
    assert list(outside.iterdir()) == []  # 0 bytes outside the workspace
    pytest.importorskip("torch", reason="the hostile files were refused; the good job after them trains (torch)")
    client.set(job_file="short.yaml")
    assert client.call(client.start).success  # and it still runs good jobs
    assert client.wait_for(lambda p: p["state"] == "succeeded", 90), client.latest()
    assert list(outside.iterdir()) == []
