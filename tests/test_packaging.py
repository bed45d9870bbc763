"""pyproject's explicit package list matches the tree, so setuptools never warns that a
package "would be ignored" and a wheel holds every module and preset."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _packages_in_tree(mapping: dict[str, str]) -> set[str]:
    found = set()
    for package, folder in mapping.items():
        base = ROOT / folder
        for init_or_data in base.rglob("*"):
            if "__pycache__" in init_or_data.parts or not init_or_data.is_file():
                continue
            if init_or_data.suffix not in (".py", ".toml"):
                continue
            relative = init_or_data.parent.relative_to(base)
            name = ".".join((package, *relative.parts))
            owner = max((p for p in mapping if name == p or name.startswith(p + ".")), key=len)
            if owner == package:
                found.add(name)
    return found


def test_package_list_is_the_tree():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(setuptools["packages"]) == _packages_in_tree(setuptools["package-dir"])


def test_no_package_hides_a_submodule_behind_another_object():
    """``neurokd.distill`` the function must not stand where ``neurokd.distill`` the module
    would (the module is ``neurokd.train.distillation``); likewise in every subpackage."""
    import importlib
    import pkgutil
    import types

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package_name in setuptools["packages"]:
        package = importlib.import_module(package_name)
        for info in pkgutil.iter_modules(package.__path__):
            value = getattr(package, info.name, None)
            assert value is None or isinstance(value, types.ModuleType), \
                f"{package_name}.{info.name} is a {type(value).__name__}, not the submodule"
