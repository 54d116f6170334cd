"""package.xml resolves with `rosdep install` on Humble, Jazzy and Kilted, and declares what the code imports.

test/data/rosdep_keys.json is a snapshot of ros/rosdistro (commit inside it; regenerate with
scripts/snapshots/rosdep_snapshot.py): how each key resolves on each distro's Ubuntu ("ros" = a released ROS package).
"""
import ast
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = json.loads((REPO / "test" / "data" / "rosdep_keys.json").read_text())
DISTROS = ("humble", "jazzy", "kilted")
# Python modules the code imports that are not ROS packages, and how they are installed.
APT_KEYS = {"numpy": "python3-numpy", "cv2": "python3-opencv", "yaml": "python3-yaml", "tqdm": "python3-tqdm"}
PIP_ONLY = {"onnxruntime", "rosbags", "simplejpeg",  # robot side: pip under a constraints file (README)
            "torch", "onnx", "onnxscript", "safetensors", "matplotlib", "skimage", "PIL", "mcap",  # offline side
            "tensorrt", "cuda", "pycuda"}  # JetPack / NVIDIA, never pip from PyPI on a Jetson
# Pip rosdep keys the README must name (it explains why package.xml leaves them out).
README_PIP_KEYS = ("python3-onnxruntime-pip", "python3-rosbags-pip")


def manifest():
    return ET.parse(REPO / "package.xml").getroot()


def declared() -> dict[str, str]:
    root = manifest()
    return {e.text.strip(): e.tag for tag in ("depend", "build_depend", "buildtool_depend", "exec_depend",
                                              "test_depend", "build_export_depend") for e in root.iter(tag)}


def test_package_xml_is_a_valid_format_3_manifest():
    from catkin_pkg.package import parse_package

    package = parse_package(str(REPO / "package.xml"))  # raises InvalidPackage on schema/content errors
    assert package.package_format == 3 and package.name == "sage_ros"
    assert [e.content for e in package.exports if e.tagname == "build_type"] == ["ament_python"]


@pytest.mark.parametrize("distro", DISTROS)
def test_every_key_resolves_without_pip(distro):
    """Every key is in rosdistro for this distro; none is a pip key (rosdep's pip installs break Jetson's GPU
    onnxruntime and Jammy's numpy 1.x, and stop at PEP 668 on Noble)."""
    keys = declared()
    assert keys, "no dependencies parsed from package.xml"
    unknown = [key for key in keys if key not in SNAPSHOT["keys"]]
    assert not unknown, f"keys not in the rosdistro snapshot (regenerate with scripts/snapshots/rosdep_snapshot.py): {unknown}"
    unresolved = [key for key in keys if SNAPSHOT["keys"][key][distro] is None]
    assert not unresolved, f"rosdep cannot resolve {unresolved} on {distro}"
    pip = [key for key in keys if isinstance(SNAPSHOT["keys"][key][distro], dict)
           and "pip" in SNAPSHOT["keys"][key][distro]]
    assert not pip, f"pip keys declared: {pip}"


def test_snapshot_knows_ament_python_is_not_a_key():
    assert all(SNAPSHOT["keys"]["ament_python"][d] is None for d in DISTROS)
    assert "ament_python" not in declared()
    assert len(SNAPSHOT["commit"]) == 40


def imported_modules() -> set[str]:
    names = set()
    for path in [*sorted((REPO / "sage_ros").rglob("*.py")), *sorted((REPO / "launch").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_every_imported_ros_package_is_declared():
    keys = declared()
    modules = imported_modules() - set(sys.stdlib_module_names) - {"sage_ros"}
    assert {"rclpy", "sensor_msgs", "launch_ros"} <= modules  # the scan sees imports inside functions too
    for module, key in APT_KEYS.items():
        if module in modules:
            assert keys.get(key) == "exec_depend", f"{module} is imported: declare <exec_depend>{key}</exec_depend>"
    ros_packages = modules - set(APT_KEYS) - PIP_ONLY
    missing = sorted(name for name in ros_packages if keys.get(name) not in ("exec_depend", "depend"))
    assert not missing, (f"imported but not declared as exec_depend: {missing} (a ROS package: add it; a pip "
                         "package: add it to PIP_ONLY here and to README's robot install)")
    not_ros = [name for name in ros_packages if SNAPSHOT["keys"].get(name, {}).get("humble") != "ros"]
    assert not not_ros, f"imported modules that are neither ROS packages nor known pip modules: {not_ros}"


def test_readme_names_the_pip_keys_it_leaves_out():
    readme = (REPO / "README.md").read_text()
    for key in README_PIP_KEYS:
        assert SNAPSHOT["keys"][key]["humble"] == {"pip": [key.removeprefix("python3-").removesuffix("-pip")]}
        assert key in readme, f"README should name the pip rosdep key {key}"


@pytest.mark.parametrize("name", ["constraints-humble.txt", "constraints-jazzy.txt"])
def test_robot_constraints_pin_everything_and_keep_numpy_1(name):
    """The robot's pip pins (docs/jetson.md): exact versions, numpy below 2 (the apt OpenCV needs it), onnxruntime
    pinned, no torch on the robot."""
    pins = {}
    for line in (REPO / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            package, _, version = line.partition("==")
            assert version, f"{name}: {line!r} is not an exact pin"
            pins[package.lower()] = version
    assert int(pins["numpy"].split(".")[0]) < 2
    assert "onnxruntime" in pins and "rosbags" in pins and "torch" not in pins
    assert name in (REPO / "docs" / "jetson.md").read_text()
