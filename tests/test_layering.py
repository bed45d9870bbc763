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
    runner = root / "exporters" / "loihi" / "lava_runner.py"
    runner.write_text("from neurokd.exporters.loihi.netx_file import read_netx  # noqa\n"
                      + runner.read_text())
    assert lint_imports.check(root, tmp_path / "tree") != 0


def test_an_import_cycle_inside_a_package_breaks_them(tmp_path):
    root = _copy_checkout(tmp_path / "checkout")
    geometry = root / "neurokd" / "student" / "geometry.py"
    inputs = root / "neurokd" / "student" / "inputs.py"
    geometry.write_text("from neurokd.student import inputs  # noqa\n" + geometry.read_text())
    inputs.write_text("from neurokd.student import geometry  # noqa\n" + inputs.read_text())
    assert lint_imports.check(root, tmp_path / "tree") != 0


def test_a_bottom_room_importing_a_higher_one_breaks_them(tmp_path):
    """files/ is below train/: a file check that imported the training loop would tie every
    reader to torch's training stack (and form a cycle through the checkpoint)."""
    root = _copy_checkout(tmp_path / "checkout")
    budget = root / "neurokd" / "files" / "budget.py"
    budget.write_text("from neurokd.train import fitting  # noqa\n" + budget.read_text())
    assert lint_imports.check(root, tmp_path / "tree") != 0


def test_a_new_core_room_must_be_placed_in_the_layers(tmp_path):
    root = _copy_checkout(tmp_path / "checkout")
    (root / "neurokd" / "sweeps").mkdir()
    (root / "neurokd" / "sweeps" / "__init__.py").write_text('"""A room nobody placed."""\n')
    tree = lint_imports.build_tree(root, tmp_path / "tree")
    assert lint_imports.unplaced_rooms(tree) == ["neurokd.sweeps"]
    assert lint_imports.check(root, tmp_path / "tree2") != 0


def test_benchmarks_import_nothing_from_the_tests():
    """A benchmark is run from a checkout by users; tests/ is not part of what neurokd ships,
    and a shared generator that lives there ties the two together (it belongs to the package
    or to a benchmarks helper)."""
    import ast

    test_modules = {p.stem for p in (ROOT / "tests").glob("*.py")}
    offenders = []
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        tree = ast.parse(script.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [(node.module or "").split(".")[0]]
            else:
                names = []
            offenders += [f"{script.name}: imports {n}" for n in names
                          if n in test_modules or n == "tests"]
            if isinstance(node, ast.Constant) and node.value == "tests":
                offenders.append(f"{script.name}: names the tests folder")
    assert offenders == []
