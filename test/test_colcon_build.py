"""`colcon build` as a robot runs it: the package source is copied into a fresh workspace, built with colcon
(colcon-common-extensions, pinned in requirements), the install tree is checked (executables, launch, config,
every shipped bundle file with the sha256 its bundle.json records, the ament index entry), and the installed
tinyvae_encoder, started from a shell that sourced install/setup.sh, finds its shipped bundle through the ament
index and publishes a latent over real DDS."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sensor_msgs.msg import Image

from ros_helpers import REPO, TestGraph, camera_frames, header, stamp_of, wait_for
from sage_ros.ros.params import DEFAULT_BUNDLES
from sage_ros.runtime.image_codec import numpy_to_image
from sage_ros.runtime.messages import image_to_output

COLCON = Path(sys.executable).parent / "colcon"
# what setup.py reads: the source a robot's src/sage_ros holds (tests, docs, bench are not installed)
SOURCE = ("package.xml", "setup.py", "setup.cfg", "resource", "launch", "config", "models", "sage_ros")
NS = "/colcon_test"


def console_scripts() -> set[str]:
    text = (REPO / "setup.py").read_text()
    return set(re.findall(r'"([\w-]+) = sage_ros[\w.]*:\w+"', text))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = tmp_path_factory.mktemp("colcon_ws")
    package = ws / "src" / "sage_ros"
    package.mkdir(parents=True)
    for name in SOURCE:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, package / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, package / name)
    result = subprocess.run([str(COLCON), "build", "--event-handlers", "console_direct-"], cwd=ws,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 package finished" in result.stdout, result.stdout
    return ws


def test_install_tree(workspace):
    prefix = workspace / "install" / "sage_ros"
    scripts = console_scripts()
    assert {"tinyvae_encoder", "puzzle_encoder", "compression_node"} <= scripts
    for name in scripts:
        path = prefix / "lib" / "sage_ros" / name
        assert path.is_file() and os.access(path, os.X_OK), f"{name} not installed in lib/sage_ros"
    share = prefix / "share" / "sage_ros"
    for pattern in ("launch/*.launch.py", "config/*.yaml"):
        expected = {p.name for p in REPO.glob(pattern)}
        assert expected and expected == {p.name for p in share.glob(pattern)}, pattern
    assert (share / "package.xml").read_bytes() == (REPO / "package.xml").read_bytes()
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "sage_ros").is_file()
    assert list(prefix.glob("lib/python3*/site-packages/sage_ros/ros/compat.py"))

    bundles = sorted(p.parent for p in (REPO / "models").glob("*/bundle.json"))
    assert any(b.name == DEFAULT_BUNDLES["tinyvae"] for b in bundles)
    for bundle in bundles:
        installed = share / "models" / bundle.name
        recorded = json.loads((bundle / "bundle.json").read_text())["files"]
        assert {"encoder.onnx", "decoder.onnx"} <= set(recorded), bundle.name
        for name, sha256 in recorded.items():
            path = installed / name
            assert path.is_file(), f"{bundle.name}/{name} not installed"
            assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256, f"{bundle.name}/{name} checksum"
        shipped = {p.relative_to(bundle) for p in bundle.rglob("*") if p.is_file()}
        assert shipped == {p.relative_to(installed) for p in installed.rglob("*") if p.is_file()}, bundle.name


def sourced_environment(workspace) -> dict:
    """os.environ after `. install/setup.sh`, as a robot's shell has it."""
    out = subprocess.run(["bash", "-c", f". '{workspace}/install/setup.sh' && env -0"], capture_output=True,
                         timeout=60, env=dict(os.environ, AMENT_PREFIX_PATH="", COLCON_PREFIX_PATH=""))
    assert out.returncode == 0, out.stderr
    env = dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)
    assert str(workspace / "install" / "sage_ros") in env.get("AMENT_PREFIX_PATH", ""), env.get("AMENT_PREFIX_PATH")
    return env


def test_installed_encoder_publishes_a_latent(workspace, tmp_path):
    env = sourced_environment(workspace)
    origin = subprocess.run([sys.executable, "-c", "import sage_ros; print(sage_ros.__file__)"], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=60).stdout.strip()
    assert origin.startswith(str(workspace / "install")), f"sage_ros imported from {origin}, not the install"
    env.update(RCUTILS_LOGGING_BUFFERED_STREAM="0", PYTHONUNBUFFERED="1")
    executable = workspace / "install" / "sage_ros" / "lib" / "sage_ros" / "tinyvae_encoder"
    log_path = tmp_path / "node.log"
    graph = TestGraph("colcon_test_peer")
    with open(log_path, "wb") as log:
        node = subprocess.Popen([str(executable), "--ros-args", "-r", f"__ns:={NS}", "-p", "device:=cpu",
                                 "-p", "backend:=onnxruntime", "-p", "image_topics:=[cam/image_raw]",
                                 "-p", "qos_reliability:=reliable"], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        latents = graph.collect(Image, f"{NS}/cam/latent")
        camera = graph.node.create_publisher(Image, f"{NS}/cam/image_raw", 10)

        def warm():
            assert node.poll() is None, log_path.read_text()
            return "backend warm" in log_path.read_text()
        wait_for(warm, 40, what="backend warm")
        installed_bundle = workspace / "install" / "sage_ros" / "share" / "sage_ros" / "models" / DEFAULT_BUNDLES["tinyvae"]
        assert str(installed_bundle) in log_path.read_text()  # found through the ament index, not the checkout
        msg = numpy_to_image(camera_frames(1)[0], "rgb8", header=header(700))

        def arrived():
            camera.publish(msg)
            return next((m for m in list(latents) if stamp_of(m) == stamp_of(msg)), None)
        out = wait_for(arrived, 30, interval=0.5, what="a latent from the installed encoder")
        assert out.encoding == "32FC1" and image_to_output(out)["mu"].shape == (out.width,)
    finally:
        node.terminate()
        try:
            node.wait(timeout=10)
        except subprocess.TimeoutExpired:
            node.kill()
        graph.close()
