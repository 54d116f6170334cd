"""Snapshot rclpy's Python surface on one branch (module-level names, and the methods of the classes nodes use),
read from a clone of github.com/ros2/rclpy, for test/test_ros_humble.py's static check.

    python scripts/snapshots/rclpy_surface.py --rclpy /path/to/rclpy(.git) --ref humble > test/data/rclpy_humble_surface.json
"""
from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from pathlib import Path

# class -> file; their methods (with those of the bases listed here) are what node code may call on `self`
CLASSES = {
    "rclpy.node.Node": "rclpy/rclpy/node.py",
    "rclpy.lifecycle.node.LifecycleNodeMixin": "rclpy/rclpy/lifecycle/node.py",
    "rclpy.lifecycle.managed_entity.ManagedEntity": "rclpy/rclpy/lifecycle/managed_entity.py",
    "rclpy.publisher.Publisher": "rclpy/rclpy/publisher.py",
    "rclpy.subscription.Subscription": "rclpy/rclpy/subscription.py",
    "rclpy.impl.rcutils_logger.RcutilsLogger": "rclpy/rclpy/impl/rcutils_logger.py",
}


def module_names(tree: ast.Module) -> list[str]:
    """Names bound at module level (defs, classes, assignments, imports, also under if/try)."""
    names = set()
    for node in tree.body:
        for sub in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
            if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(sub.name)
            elif isinstance(sub, ast.Assign):
                names.update(t.id for t in sub.targets if isinstance(t, ast.Name))
            elif isinstance(sub, ast.AnnAssign) and isinstance(sub.target, ast.Name):
                names.add(sub.target.id)
            elif isinstance(sub, (ast.Import, ast.ImportFrom)):
                names.update((a.asname or a.name).split(".")[0] for a in sub.names)
    return sorted(name for name in names if not name.startswith("__"))


def class_methods(tree: ast.Module, name: str) -> list[str]:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return sorted(item.name for item in node.body
                          if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and
                          (not item.name.startswith("_") or item.name == "__init__"))
    raise SystemExit(f"class {name} not found")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rclpy", required=True, help="clone or bare mirror of github.com/ros2/rclpy")
    parser.add_argument("--ref", default="humble")
    args = parser.parse_args(argv)
    path = Path(args.rclpy)
    git = ["git", "--git-dir", str(path / ".git" if (path / ".git").exists() else path)]

    def run(*command: str) -> str:
        return subprocess.run([*git, *command], check=True, capture_output=True, text=True).stdout

    commit = run("rev-parse", args.ref).strip()
    modules = {}
    for name in run("ls-tree", "-r", "--name-only", commit, "rclpy/rclpy/").split():
        if name.endswith(".py"):
            module = name[len("rclpy/"):-3].replace("/", ".").removesuffix(".__init__")
            modules[module] = module_names(ast.parse(run("show", f"{commit}:{name}")))
    classes = {cls: class_methods(ast.parse(run("show", f"{commit}:{file}")), cls.rsplit(".", 1)[1])
               for cls, file in CLASSES.items()}
    head = {"source": "https://github.com/ros2/rclpy", "ref": args.ref, "commit": commit}
    lines = [f" {json.dumps(key)}: {json.dumps(value)}," for key, value in head.items()]
    mods = [f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in sorted(modules.items())]
    cls = [f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in classes.items()]
    sys.stdout.write("{\n" + "\n".join(lines) + '\n "modules": {\n' + ",\n".join(mods) + '\n },\n "classes": {\n'
                     + ",\n".join(cls) + "\n }\n}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
