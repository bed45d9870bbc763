"""The layering contracts hold for this checkout, and they do catch a violation."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

import lint_imports  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _copy_checkout(target: Path) -> Path:
    for folder in ("neurokd", "exporters", "energy"):
        shutil.copytree(ROOT / folder, target / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", target / "pyproject.toml")
    return target


def test_contracts_hold_here(tmp_path):
    assert lint_imports.check(ROOT, tmp_path / "tree") == 0


def test_a_core_module_importing_energy_breaks_them(tmp_path):
    root = _copy_checkout(tmp_path / "checkout")
    (root / "neurokd" / "probe.py").write_text("from neurokd.energy import count  # noqa\n")
    assert lint_imports.check(root, tmp_path / "tree") != 0


def test_the_lava_runner_importing_neurokd_breaks_them(tmp_path):
    root = _copy_checkout(tmp_path / "checkout")
    runner = root / "exporters" / "lava_runner.py"
    runner.write_text("from neurokd.exporters.netx_file import read_netx  # noqa\n"
                      + runner.read_text())
    assert lint_imports.check(root, tmp_path / "tree") != 0


def test_an_import_cycle_inside_a_package_breaks_them(tmp_path):
    root = _copy_checkout(tmp_path / "checkout")
    (root / "neurokd" / "geometry.py").write_text(
        "from neurokd import inputs  # noqa\n" + (root / "neurokd" / "geometry.py").read_text())
    (root / "neurokd" / "inputs.py").write_text(
        "from neurokd import geometry  # noqa\n" + (root / "neurokd" / "inputs.py").read_text())
    assert lint_imports.check(root, tmp_path / "tree") != 0
