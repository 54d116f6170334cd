"""Snapshot how rosdep resolves sage_ros's dependency keys, read from a clone of github.com/ros/rosdistro.

    python scripts/snapshots/rosdep_snapshot.py --rosdistro /path/to/rosdistro(.git) [--commit REF] > test/data/rosdep_keys.json

For every key in package.xml (plus the pip keys the README names), on Humble (Ubuntu jammy), Jazzy and Kilted
(Ubuntu noble): "ros" when a released ROS package of that distro (<distro>/distribution.yaml), else the apt
packages or pip packages rosdep/base.yaml or rosdep/python.yaml give for that Ubuntu release, else null (rosdep
cannot resolve it). test/test_package_manifest.py checks package.xml against the written file offline.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DISTROS = {"humble": "jammy", "jazzy": "noble", "kilted": "noble"}
DEPEND_TAGS = ("depend", "build_depend", "buildtool_depend", "exec_depend", "test_depend", "build_export_depend")
# Keys the README names but package.xml deliberately does not declare (see README, "rosdep keys"), and one that is
# not a key at all (a common mistake: ament_python is a build_type, not a package).
EXTRA_KEYS = ("python3-onnxruntime-pip", "python3-onnxruntime-gpu-pip", "python3-rosbags-pip",
              "python3-simplejpeg-pip", "python3-torch", "ament_python")


def manifest_keys(path: Path = REPO / "package.xml") -> dict[str, str]:
    """key -> tag for every dependency in a package.xml."""
    root = ET.parse(path).getroot()
    return {element.text.strip(): element.tag for tag in DEPEND_TAGS for element in root.iter(tag)}


def _reader(rosdistro: str, commit: str | None):
    path = Path(rosdistro)
    if commit or not (path / "rosdep").is_dir():  # a bare mirror, or a pinned commit of a clone
        ref = commit or "HEAD"

        git_dir = path / ".git" if (path / ".git").exists() else path  # a clone, or a bare repository

        def read(name: str) -> str:
            return subprocess.run(["git", "--git-dir", str(git_dir), "show", f"{ref}:{name}"], check=True,
                                  capture_output=True, text=True).stdout
        return read
    return lambda name: (path / name).read_text()


def released_packages(distribution: dict) -> set[str]:
    names = set()
    for repo_name, repo in (distribution.get("repositories") or {}).items():
        release = repo.get("release") or {}
        if release.get("version"):
            names.update(release.get("packages") or [repo_name])
    return names


def resolve(rules: dict | None, codename: str):
    """rosdep's rule for Ubuntu `codename`: {"apt": [...]}, {"pip": [...]} or None."""
    if rules is None:
        return None
    ubuntu = rules.get("ubuntu")
    if isinstance(ubuntu, dict) and "pip" not in ubuntu:
        ubuntu = ubuntu.get(codename, ubuntu.get("*"))
    if ubuntu is None:
        return None
    if isinstance(ubuntu, dict) and "pip" in ubuntu:
        return {"pip": list(ubuntu["pip"]["packages"])}
    if isinstance(ubuntu, dict) and "apt" in ubuntu:
        return {"apt": list(ubuntu["apt"]["packages"])}
    return {"apt": list(ubuntu)}


def snapshot(read, keys) -> dict:
    rules = {**yaml.safe_load(read("rosdep/base.yaml")), **yaml.safe_load(read("rosdep/python.yaml"))}
    packages = {distro: released_packages(yaml.safe_load(read(f"{distro}/distribution.yaml"))) for distro in DISTROS}
    return {key: {distro: ("ros" if key in packages[distro] else resolve(rules.get(key), codename))
                  for distro, codename in DISTROS.items()} for key in sorted(keys)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rosdistro", required=True, help="clone or bare mirror of github.com/ros/rosdistro")
    parser.add_argument("--commit", help="commit to read (default HEAD)")
    args = parser.parse_args(argv)
    read = _reader(args.rosdistro, args.commit)
    commit = args.commit
    if commit is None:
        git_dir = Path(args.rosdistro)
        commit = subprocess.run(["git", "-C", str(git_dir), "rev-parse", "HEAD"], capture_output=True,
                                text=True).stdout.strip() or "unknown"
    keys = set(manifest_keys()) | set(EXTRA_KEYS)
    head = {"source": "https://github.com/ros/rosdistro", "commit": commit,
            "files": ["rosdep/base.yaml", "rosdep/python.yaml", *[f"{d}/distribution.yaml" for d in DISTROS]],
            "ubuntu": DISTROS}
    lines = [f" {json.dumps(name)}: {json.dumps(value)}," for name, value in head.items()]
    entries = [f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in snapshot(read, keys).items()]
    sys.stdout.write("{\n" + "\n".join(lines) + '\n "keys": {\n' + ",\n".join(entries) + "\n }\n}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
