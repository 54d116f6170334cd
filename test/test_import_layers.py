"""The layering of docs/design.md is a contract the tests enforce: import-linter (.importlinter) finds no import
from a lower layer to a higher one, no import cycle between sibling modules, and no torch / rclpy in runtime/."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
CONFIG = REPO / ".importlinter"


def lint_imports(package_root: Path) -> subprocess.CompletedProcess:
    """lint-imports with `sage_ros` imported from package_root (the checkout, or a modified copy)."""
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo", str(CONFIG)], cwd=package_root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_every_import_contract_is_kept():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_layers_contract_is_the_list_in_the_design_doc():
    design = (REPO / "docs" / "design.md").read_text()
    section = design[design.index("## Layers"):]
    doc_layers = section[section.index("```") + 3:].split("```")[0].split()
    config = CONFIG.read_text()
    block = config[config.index("[importlinter:contract:layers]"):]
    config_layers = block[block.index("layers =") + len("layers ="):].split("\n\n")[0].split()
    assert doc_layers == config_layers
    assert re.search(r"^exhaustive = True$", block, re.M)


def test_an_upward_import_breaks_the_contract(tmp_path):
    shutil.copytree(REPO / "sage_ros", tmp_path / "sage_ros", ignore=shutil.ignore_patterns("__pycache__"))
    settings = tmp_path / "sage_ros" / "runtime" / "settings.py"
    settings.write_text(settings.read_text() + "\nfrom sage_ros.ros import params  # noqa: E402\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "sage_ros.runtime.settings -> sage_ros.ros.params" in result.stdout
