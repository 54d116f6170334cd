"""The demo's child processes: started in their own sessions, logs on disk, stopped in order (also when the
demo itself dies), and the commands that start `sage-ros` verbs and encoder nodes."""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .common import BIN, REPO, DemoError


# --- child processes -------------------------------------------------------------------------------------------

def _die_with_parent() -> None:
    """Runs in each child before exec: Linux sends it SIGTERM if the demo itself dies (even by SIGKILL),
    so no encoder or recorder outlives a killed demo. Best effort: a no-op where prctl does not exist."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def wait_for_log(self, text: str, timeout: float) -> None:
        """Block until `text` appears in the child's log; DemoError if it exits or the time runs out."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if self.process.poll() is not None:
                raise DemoError(f"{self.name} exited ({self.process.returncode}) before it was ready; its log "
                                f"({self.log_path}):\n{self.tail()}")
            if time.monotonic() > deadline:
                raise DemoError(f"{self.name} not ready after {timeout:.0f} s; its log ({self.log_path}):\n{self.tail()}")
            time.sleep(0.05)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DemoError(f"{self.name} still running after {timeout:.0f} s; its log ({self.log_path}):\n"
                            f"{self.tail()}") from None


class ProcessGroup:
    """Child processes (each in its own session, so a terminal Ctrl-C reaches only us and we stop them in
    order), logs under `log_dir`. `stop_all()` (also on exit from `with`) stops every child still running:
    SIGINT first (nodes shut down, the recorder closes its bag), SIGKILL after `grace` seconds."""

    def __init__(self, log_dir: Path, env: dict[str, str], grace: float = 10.0):
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.grace = grace
        self.children: list[Child] = []

    def start(self, name: str, command: list[str]) -> Child:
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "wb") as log:  # the child keeps its own descriptor
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=REPO,
                                       start_new_session=True, preexec_fn=_die_with_parent)
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def stop(self, child: Child, grace: float | None = None) -> int:
        if child.process.poll() is None:
            self._signal(child, signal.SIGINT)
            try:
                child.process.wait(timeout=self.grace if grace is None else grace)
            except subprocess.TimeoutExpired:
                self._signal(child, signal.SIGKILL)
                child.process.wait(timeout=5)
        return child.process.returncode

    @staticmethod
    def _signal(child: Child, signum: int) -> None:
        try:
            os.killpg(child.process.pid, signum)  # its session = its process group; reaches any helper it forked
        except ProcessLookupError:
            pass

    def stop_all(self) -> None:
        """Newest first: the player (no more input), the recorder (closes its bag), then the encoders.
        A second Ctrl-C while this runs is ignored: it must not leave children behind."""
        import threading

        main_thread = threading.current_thread() is threading.main_thread()
        previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)} if main_thread else {}
        try:
            for child in reversed(self.children):
                self.stop(child)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop_all()


def child_env(domain_id: int | None = None, large_data: bool = False) -> dict[str, str]:
    """The children's environment: localhost-only discovery (a demo must not publish onto a robot's graph),
    an own ROS domain unless one is set, unbuffered logs (readiness is read from them), and optionally Fast
    DDS's LARGE_DATA transports (shared memory + TCP; lower latency for large images: docs/design.md, BENCHMARKS.md)."""
    env = dict(os.environ)
    if large_data:
        env["FASTDDS_BUILTIN_TRANSPORTS"] = "LARGE_DATA"
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    env.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.update(RCUTILS_LOGGING_BUFFERED_STREAM="0", PYTHONUNBUFFERED="1")
    return env


def sage_ros_command(*args) -> list[str]:
    return [sys.executable, "-m", "sage_ros.cli", *map(str, args)]


def encoder_command(preset: str, bundle: Path, node_name: str, params: dict | None = None,
                    remaps: dict[str, str] | None = None) -> list[str]:
    """The encoder executable (`tinyvae_encoder` / `puzzle_encoder` console script, as `ros2 run` starts it)
    with ROS arguments. Floats must be written with a decimal point: the node rejects an int for a double."""
    executable = BIN / f"{preset}_encoder"
    command = [str(executable)] if executable.exists() else [
        sys.executable, "-c", f"import sys; from sage_ros.ros.encoder_node import main; sys.exit(main(sys.argv, {preset!r}))"]
    command += ["--ros-args", "-r", f"__node:={node_name}", "-p", f"bundle:={bundle}"]
    for key, value in (params or {}).items():
        text = f"[{','.join(value)}]" if isinstance(value, (list, tuple)) else (
            str(value).lower() if isinstance(value, bool) else repr(value) if isinstance(value, float) else str(value))
        command += ["-p", f"{key}:={text}"]
    for old, new in (remaps or {}).items():
        command += ["-r", f"{old}:={new}"]
    return command
