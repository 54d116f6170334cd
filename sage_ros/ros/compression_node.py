"""compression_node: run ONE offline compression job (train / distill / quantize / ablate / export / evaluate)
described by a YAML file, started and cancelled over std_srvs/Trigger services, progress on a topic.

- `~/start`: reads `job_file` (inside `workspace`), checks every path in it, starts the job as a `sage-ros`
  subprocess (sage_ros.compression.jobs) with the workspace as its working directory.
- `~/cancel`: stops the running job (SIGTERM, then SIGKILL after `cancel_timeout`).
- `~/progress` (diagnostic_msgs/DiagnosticStatus, every `progress_period` s): state, phase, step, total, loss,
  images/s, ETA, error, from the job's <run_dir>/progress.json.
Every path (job file, data, outputs) must resolve inside `workspace` (symlinks and '..' followed); anything else
is refused with a clear error, so the services cannot become an arbitrary file write. This process never
imports torch: the job runs in its own process.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_srvs.srv import Trigger

from sage_ros.compression.jobs import Job, JobSpecError, load_spec, option_kinds, option_name
from sage_ros.compression.progress import read_progress
from sage_ros.ros.workspace import WorkspaceError, confine, confine_spec, workspace_root

# name -> (default, description, float range or None, read_only)
PARAMETERS = {
    "workspace": ("", "Directory every job path must stay inside (job file, data, outputs).", None, True),
    "job_file": ("job.yaml", "YAML job description, relative to the workspace (or absolute inside it).", None, False),
    "data_dir": ("data", "Dataset root for the job (its SAGE_ROS_DATA), relative to the workspace.", None, False),
    "progress_period": (0.5, "Seconds between ~/progress messages.", (0.05, 10.0), True),
    "cancel_timeout": (5.0, "Seconds a cancelled job gets after SIGTERM before SIGKILL.", (0.1, 120.0), False),
    "autostart": (False, "Start the job at launch instead of waiting for ~/start.", None, True),
}
LEVELS = {"idle": DiagnosticStatus.OK, "running": DiagnosticStatus.OK, "succeeded": DiagnosticStatus.OK,
          "cancelled": DiagnosticStatus.WARN, "failed": DiagnosticStatus.ERROR, "refused": DiagnosticStatus.ERROR}


def load_job(root: Path, job_file: str) -> dict:
    """Read a job file inside `root` and normalise it (sage_ros.compression.jobs.load_spec); every path in it is
    made absolute inside `root` (WorkspaceError otherwise)."""
    path = confine(root, job_file, "job_file")
    if not path.is_file():
        raise JobSpecError(f"job file {job_file!r} ({path}) does not exist")
    spec = confine_spec(root, load_spec(path))
    # Every option the allow-list calls a path is confined, whatever its spelling ('data_path', '--data-path')
    # and whatever it looks like: a bare name can be a symlink leading out.
    kinds = option_kinds(spec["job"], spec["args"])
    for key, value in spec["args"].items():
        if kinds[option_name(key)] in ("path", "paths") and value not in (None, False):
            values = value if isinstance(value, list) else [value]
            confined = [str(confine(root, str(item), f"job.args.{key}")) for item in values]
            spec["args"][key] = confined if isinstance(value, list) else confined[0]
    return spec


class CompressionNode(Node):
    def __init__(self, **kwargs):
        super().__init__("compression_node", **kwargs)
        self._declare_parameters()
        self.job: Job | None = None
        self.state, self.detail = "idle", "waiting for ~/start"
        self.progress_pub = self.create_publisher(
            DiagnosticStatus, "~/progress", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        self.create_service(Trigger, "~/start", self._on_start)
        self.create_service(Trigger, "~/cancel", self._on_cancel)
        self.timer = self.create_timer(self.get_parameter("progress_period").value, self._publish_progress)
        if self.get_parameter("autostart").value:
            self._start()

    def _declare_parameters(self) -> None:
        for name, (default, description, float_range, read_only) in PARAMETERS.items():
            descriptor = ParameterDescriptor(description=description, read_only=read_only)
            if float_range:
                low, high = float_range
                descriptor.floating_point_range = [FloatingPointRange(from_value=low, to_value=high)]
            self.declare_parameter(name, default, descriptor)
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _on_set_parameters(self, params) -> SetParametersResult:
        """Ranges and read-only flags are enforced by rclpy from the descriptors; types here (ROS parameters are
        statically typed, but an int given for a double would otherwise be accepted by YAML-less callers)."""
        for param in params:
            default = PARAMETERS[param.name][0] if param.name in PARAMETERS else None
            if default is not None and type(param.value) is not type(default):
                return SetParametersResult(successful=False, reason=f"{param.name} must be {type(default).__name__}")
        return SetParametersResult(successful=True)

    # --- services ----------------------------------------------------------------------------------------------

    def _on_start(self, _request, response):
        response.success, response.message = self._start()
        return response

    def _on_cancel(self, _request, response):
        if self.job is None or self.job.poll() is not None:
            response.success, response.message = False, "no job is running"
            return response
        self.job.cancel(self.get_parameter("cancel_timeout").value)
        self.state, self.detail = "cancelled", f"cancelled; exit code {self.job.poll()}"
        response.success, response.message = True, f"job {self.job.spec['job']} cancelled"
        self.get_logger().info(response.message)
        return response

    def _start(self) -> tuple[bool, str]:
        if self.job is not None and self.job.poll() is None:
            return False, f"job {self.job.spec['job']} is already running (pid {self.job.process.pid})"
        try:
            root = workspace_root(self.get_parameter("workspace").value)
            spec = load_job(root, self.get_parameter("job_file").value)
            env = {**os.environ, "SAGE_ROS_DATA": str(confine(root, self.get_parameter("data_dir").value, "data_dir"))}
            self.job = Job.start(spec, cwd=root, env=env)
        except (WorkspaceError, JobSpecError, OSError) as exc:
            self.state, self.detail = "refused", str(exc)
            self.get_logger().error(f"job refused: {exc}")
            return False, f"refused: {exc}"
        except Exception as exc:  # noqa: BLE001 - a hostile job file must get an answer, never kill the node
            self.state, self.detail = "refused", f"{type(exc).__name__}: {exc}"
            self.get_logger().error(f"job refused: {type(exc).__name__}: {exc}")
            return False, f"refused: {type(exc).__name__}: {exc}"
        self.state, self.detail = "running", f"pid {self.job.process.pid}, log {self.job.run_dir / 'job.log'}"
        self.get_logger().info(f"started {spec['job']} in {spec['run_dir']}")
        return True, f"started {spec['job']} in {spec['run_dir']}"

    # --- progress ----------------------------------------------------------------------------------------------

    def _publish_progress(self) -> None:
        progress = {}
        if self.job is not None:
            self._update_state()
            progress = read_progress(self.job.run_dir) or {}
        status = DiagnosticStatus(name=f"{self.get_fully_qualified_name()}: {progress.get('job') or 'no job'}",
                                  hardware_id="sage_ros", level=LEVELS[self.state])
        status.message = f"{self.state}: {progress.get('phase') or self.detail}"
        values = {"state": self.state, "detail": self.detail,
                  **{key: progress.get(key) for key in ("job", "phase", "step", "total", "loss", "images_per_s",
                                                        "eta_s", "done", "error")}}
        status.values = [KeyValue(key=key, value="" if value is None else str(value)) for key, value in values.items()]
        self.progress_pub.publish(status)

    def _update_state(self) -> None:
        code = self.job.poll()
        if code is None or self.state != "running":
            return
        if code == 0:
            self.state, self.detail = "succeeded", "exit code 0"
        else:
            self.state, self.detail = "failed", f"exit code {code}; see {self.job.run_dir / 'job.log'}"

    def shutdown(self) -> None:
        if self.job is not None and self.job.poll() is None:
            self.job.cancel(self.get_parameter("cancel_timeout").value)


def main(args=None) -> int:
    """Run the compression node until Ctrl-C / SIGTERM. Exit codes: 0 ok, 2 invalid parameters (or arguments
    rclpy cannot parse, e.g. a missing --params-file)."""
    from sage_ros.ros.run import run_node

    return run_node("compression_node", CompressionNode, args, close=CompressionNode.shutdown)


if __name__ == "__main__":
    sys.exit(main())
