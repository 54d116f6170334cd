"""Humble (JetPack 6) compatibility: the encoder node started under Humble's rclpy Python surface, simulated over
the installed Kilted rclpy (test/humble_rclpy.py: no rclpy.event_handler, rclpy.qos_event with Humble's
signatures, no matched events), gets frames over real DDS and publishes the latents an offline encoding gives;
publishers connecting and leaving are still logged and in /diagnostics (polled: ros/compat.py)."""
import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image

from ros_helpers import REPO, NodeProcess, TestGraph, camera_frames, header, stamp_of, wait_for
from sage_ros.ros.diagnostics import status_values
from sage_ros.ros.params import DEFAULT_BUNDLES
from sage_ros.runtime.backends import make_backend
from sage_ros.runtime.bundle import load_bundle
from sage_ros.runtime.image_codec import numpy_to_image
from sage_ros.runtime.messages import image_to_output
from sage_ros.runtime.preprocess import Preprocessor

SIM = Path(__file__).with_name("humble_rclpy.py")
NS = "/humble_sim"
NODE = f"{NS}/tinyvae_encoder"


def run_under_simulation(code: str) -> subprocess.CompletedProcess:
    script = f"import sys; sys.path.insert(0, {str(SIM.parent)!r}); import humble_rclpy; humble_rclpy.install()\n"
    return subprocess.run([sys.executable, "-c", script + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=60, cwd=REPO)


def test_simulation_has_humbles_surface_and_compat_adapts():
    """The simulation rejects what Humble rejects (so the old `matched=` / event_handler code fails under it),
    and compat picks qos_event and polling there."""
    result = run_under_simulation("""
        import importlib
        try:
            importlib.import_module("rclpy.event_handler")
            print("event_handler importable")
        except ImportError:
            pass
        from rclpy.qos_event import SubscriptionEventCallbacks
        try:
            SubscriptionEventCallbacks(matched=print)
            print("matched accepted")
        except TypeError:
            pass
        from sage_ros.ros import compat, qos
        assert compat.MATCHED_EVENTS is False, compat.MATCHED_EVENTS
        assert compat.SubscriptionEventCallbacks.__module__ == "rclpy.qos_event"
        events = qos.subscription_events(None, "image")
        assert callable(events.matched) and not hasattr(events, "incompatible_type")
        print("ok")
    """)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stdout + result.stderr


def test_compat_on_the_installed_rclpy_uses_matched_events():
    from sage_ros.ros import compat

    assert compat.MATCHED_EVENTS  # Kilted: the middleware reports matches itself, nothing is polled
    assert compat.SubscriptionEventCallbacks.__module__ == "rclpy.event_handler"


class SimulatedHumbleEncoder(NodeProcess):
    """tinyvae_encoder under the Humble simulation (test/humble_rclpy.py), in its own process."""

    def __init__(self, ros_args: list[str], log_path: Path):
        self.log_path = log_path
        self._log = open(log_path, "wb")
        env = dict(os.environ, RCUTILS_LOGGING_BUFFERED_STREAM="0", PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen([sys.executable, str(SIM), "tinyvae", "--ros-args", *ros_args],
                                        stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=REPO)


@pytest.fixture(scope="module")
def graph():
    with TestGraph("humble_sim_peer") as graph:
        yield graph


def latest_matched(diagnostics) -> str | None:
    for array in reversed(list(diagnostics)):
        if array.status and array.status[0].name.startswith(NODE):
            return status_values(array).get("publishers_matched")
    return None


def test_encoder_node_under_humble_surface_publishes_latents(graph, tmp_path):
    node = SimulatedHumbleEncoder([
        "-r", f"__ns:={NS}", "-p", "backend:=onnxruntime", "-p", "device:=cpu", "-p", "image_topics:=[cam/image_raw]",
        "-p", "diagnostics_period:=0.3", "-p", "qos_reliability:=reliable"], tmp_path / "node.log")
    try:
        latents = graph.collect(Image, f"{NS}/cam/latent")
        diagnostics = graph.collect(DiagnosticArray, "/diagnostics")
        log = node.wait_log("backend warm", timeout=40)
        assert "humble simulation: MATCHED_EVENTS=False callbacks from rclpy.qos_event" in log
        assert DEFAULT_BUNDLES["tinyvae"] in log  # the shipped default bundle, found without a path
        wait_for(lambda: latents.matched(), 20, what="latent topic matched")

        camera = graph.node.create_publisher(Image, f"{NS}/cam/image_raw", 10)
        node.wait_log("'cam/image_raw': publisher connected (1 now)", timeout=20)
        frames = camera_frames(3)
        bundle = load_bundle(REPO / "models" / DEFAULT_BUNDLES["tinyvae"])
        backend = make_backend(bundle, "onnxruntime", "cpu", intra_op_threads=1)
        reference = backend.encode(Preprocessor.from_bundle(bundle, "resize")(list(frames)))
        for i, frame in enumerate(frames):
            msg = numpy_to_image(frame, "rgb8", header=header(500 + i))

            def arrived(stamp=stamp_of(msg)):
                camera.publish(msg)
                return next((m for m in list(latents) if stamp_of(m) == stamp), None)
            out = wait_for(arrived, 20, interval=0.5, what=f"latent of frame {i}")
            assert (out.encoding, out.height, out.header.frame_id) == ("32FC1", 3, "camera_optical_frame")
            np.testing.assert_allclose(image_to_output(out)["mu"], reference["mu"][i], rtol=1e-5, atol=1e-6)

        wait_for(lambda: latest_matched(diagnostics) == "1", 10, what="publishers_matched 1 in /diagnostics")
        graph.node.destroy_publisher(camera)
        node.wait_log("'cam/image_raw': publisher left (0 now)", timeout=20)
        wait_for(lambda: latest_matched(diagnostics) == "0", 10, what="publishers_matched 0 in /diagnostics")
        assert node.process.poll() is None, node.log()
    finally:
        node.stop()
    assert "Traceback" not in node.log(), node.log()


# --- static: every rclpy name the package uses exists in Humble's rclpy ------------------------------------------
SURFACE = json.loads((REPO / "test" / "data" / "rclpy_humble_surface.json").read_text())
C_EXTENSIONS = {"rclpy._rclpy_pybind11"}  # compiled; Humble's impl/implementation_singleton.py loads it by this name
NODE_METHODS = {name for cls in ("rclpy.node.Node", "rclpy.lifecycle.node.LifecycleNodeMixin",
                                 "rclpy.lifecycle.managed_entity.ManagedEntity") for name in SURFACE["classes"][cls]}
LOGGER_METHODS = set(SURFACE["classes"]["rclpy.impl.rcutils_logger.RcutilsLogger"])


def _guarded(tree) -> set[int]:
    """ids of imports in a `try:` body whose handler catches ImportError (a fallback import is checked instead)."""
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                h.type is not None and any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError")
                                           for n in ast.walk(h.type)) for h in node.handlers):
            guarded.update(id(sub) for stmt in node.body for sub in ast.walk(stmt))
    return guarded


def _module_has(module: str, name: str) -> bool:
    return module in C_EXTENSIONS or name in SURFACE["modules"].get(module, ()) or \
        f"{module}.{name}" in SURFACE["modules"]


def humble_surface_violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    guarded, bad = _guarded(tree), []
    where = str(path.relative_to(REPO)) if REPO in path.parents else path.name
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rclpy":
            if node.module not in SURFACE["modules"] and node.module not in C_EXTENSIONS:
                bad.append(f"{where}:{node.lineno}: module {node.module} does not exist on Humble")
            else:
                bad += [f"{where}:{node.lineno}: {node.module}.{a.name} does not exist on Humble"
                        for a in node.names if not _module_has(node.module, a.name)]
        elif isinstance(node, ast.Import):
            bad += [f"{where}:{node.lineno}: module {a.name} does not exist on Humble" for a in node.names
                    if a.name.startswith("rclpy.") and a.name not in SURFACE["modules"]]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "rclpy":
            if not _module_has("rclpy", node.attr):
                bad.append(f"{where}:{node.lineno}: rclpy.{node.attr} does not exist on Humble")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and \
                isinstance(node.value.value, ast.Name) and node.value.value.id == "rclpy" and \
                f"rclpy.{node.value.attr}" in SURFACE["modules"]:
            if not _module_has(f"rclpy.{node.value.attr}", node.attr):
                bad.append(f"{where}:{node.lineno}: rclpy.{node.value.attr}.{node.attr} does not exist on Humble")
        elif isinstance(node, ast.ClassDef) and any(isinstance(b, ast.Name) and b.id in ("Node", "LifecycleNode")
                                                    for b in node.bases):
            own = {item.name for item in node.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))}
            own |= {t.attr for sub in ast.walk(node) if isinstance(sub, (ast.Assign, ast.AnnAssign))
                    for t in (sub.targets if isinstance(sub, ast.Assign) else [sub.target])
                    if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"}
            for call in ast.walk(node):
                if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)):
                    continue
                target, name = call.func.value, call.func.attr
                on_self = isinstance(target, ast.Name) and target.id == "self"
                on_super = isinstance(target, ast.Call) and getattr(target.func, "id", None) == "super"
                if (on_self and name not in own or on_super) and name not in NODE_METHODS:
                    bad.append(f"{where}:{call.lineno}: {node.name} calls Node.{name}, absent on Humble")
                on_logger = isinstance(target, ast.Call) and isinstance(target.func, ast.Attribute) and \
                    target.func.attr == "get_logger"
                if on_logger and name not in LOGGER_METHODS:
                    bad.append(f"{where}:{call.lineno}: logger.{name} does not exist on Humble")
    return bad


def test_every_rclpy_name_used_exists_on_humble():
    """Static complement of the simulation: every rclpy module / name imported or used as rclpy.x.y in sage_ros/, and
    every Node / LifecycleNode / logger method node classes call, exists in rclpy's humble branch (snapshot:
    test/data/rclpy_humble_surface.json, made by scripts/snapshots/rclpy_surface.py)."""
    files = sorted((REPO / "sage_ros").rglob("*.py"))
    violations = [v for path in files for v in humble_surface_violations(path)]
    assert not violations, "\n".join(violations)


def test_the_static_check_catches_post_humble_api(tmp_path):
    probe = tmp_path / "probe.py"
    source = textwrap.dedent("""
        from rclpy.event_handler import SubscriptionEventCallbacks
        from rclpy.qos import QoSProfile, NoSuchThing
        from rclpy.lifecycle import LifecycleNode
        import rclpy
        class N(LifecycleNode):
            def go(self):
                self.create_subscription(1, 2, 3, 4)
                self.get_publishers_info_by_topic("x")
                self.no_such_node_method()
                self.get_logger().warning("ok")
                self.get_logger().no_such_level("x")
                rclpy.spin_once(self)
                rclpy.no_such_function()
    """)
    probe.write_text(source)
    found = humble_surface_violations(probe)
    text = "\n".join(found)
    assert len(found) == 5, text
    for needle in ("rclpy.event_handler", "NoSuchThing", "no_such_node_method", "no_such_level",
                   "no_such_function"):
        assert needle in text, text
