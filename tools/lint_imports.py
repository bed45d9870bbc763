"""Check neurokd's layering with import-linter (``make lint``, part of ``make test``).

Contracts (DESIGN.md, "Layering"):
  1. the training core (every ``neurokd.X`` but ``cli``, ``exporters``, ``energy``) never
     imports the exporters, energy or the CLI;
  2. energy never imports the exporters;
  3. ``exporters/loihi/lava_runner.py`` (it runs inside ``.venv-lava``) and
     ``exporters/nir/consumer_runner.py`` (a script run beside Sinabs) import no other neurokd module;
  4. no import cycles among the modules of any package (``acyclic_siblings``);
  5. the core's rooms in layers (``CORE_LAYERS``): a room imports only rooms below it, so
     ``files``, ``runtime`` and ``errors`` at the bottom import nothing above them.
The module lists are read from the tree each run, so a new module is covered without editing
any list here.

``pyproject.toml`` maps the top-level ``exporters/`` and ``energy/`` folders to
``neurokd.exporters`` and ``neurokd.energy``. An editable install resolves those names through
setuptools' import hook, which import-linter's graph builder (grimp) does not consult: it walks
the ``neurokd/`` folder and would never see the two subpackages. So the layout a wheel would
have is rebuilt from symlinks (``build/import-tree/``, fresh each run, from
``[tool.setuptools.package-dir]``) and the contracts run over it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTSIDE_CORE = ("cli", "exporters", "energy")
RUNNER = "neurokd.exporters.loihi.lava_runner"
# runs as a script in a subprocess whose path holds a NIR consumer (Sinabs): no neurokd either
CONSUMER_RUNNER = "neurokd.exporters.nir.consumer_runner"
# The core's rooms, top to bottom ("a | b": neither imports the other). A new room of the core
# must be placed here: the test of this file fails for a room left out.
CORE_LAYERS = ["cli", "train", "student", "config", "models", "data | losses | anytime",
               "validation", "files", "runtime", "errors | text"]


def build_tree(root: Path, tree: Path) -> Path:
    """``tree/neurokd/...`` as a wheel would lay it out, made of symlinks into ``root``."""
    mapping = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"]
    shutil.rmtree(tree, ignore_errors=True)
    for package, folder in sorted(mapping.items(), key=lambda item: item[0].count(".")):
        target = tree.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for entry in (root / folder).iterdir():
            mapped = entry.is_dir() and f"{package}.{entry.name}" in mapping
            if entry.name != "__pycache__" and not mapped:
                (target / entry.name).symlink_to(entry.resolve())
    return tree


def _modules(folder: Path, prefix: str) -> list[str]:
    """Dotted names of the modules and packages directly inside ``folder``."""
    names = []
    for entry in sorted(folder.iterdir()):
        if entry.suffix == ".py" and entry.stem != "__init__":
            names.append(f"{prefix}.{entry.stem}")
        elif entry.is_dir() and (entry / "__init__.py").exists():
            names.append(f"{prefix}.{entry.name}")
    return names


def contracts(tree: Path) -> str:
    """The import-linter configuration (TOML) for the tree."""
    top = _modules(tree / "neurokd", "neurokd")
    # __main__ is ``python -m neurokd``: the CLI's entry point, not the core
    core = [m for m in top if m.rsplit(".", 1)[1] not in (*OUTSIDE_CORE, "__main__")]
    everything_else = [m for m in top if m != "neurokd.exporters"] + [
        m for m in _modules(tree / "neurokd" / "exporters", "neurokd.exporters")
        if m not in (RUNNER, CONSUMER_RUNNER)]
    rules = [
        ("the training core never imports exporters, energy or the CLI", "forbidden",
         {"source_modules": core,
          "forbidden_modules": [f"neurokd.{m}" for m in OUTSIDE_CORE]}),
        ("energy never imports the exporters", "forbidden",
         {"source_modules": ["neurokd.energy"], "forbidden_modules": ["neurokd.exporters"]}),
        ("lava_runner.py (it runs inside .venv-lava) imports no neurokd module", "forbidden",
         {"source_modules": [RUNNER], "forbidden_modules": everything_else}),
        ("consumer_runner.py (a script beside other libraries) imports no neurokd module",
         "forbidden", {"source_modules": [CONSUMER_RUNNER], "forbidden_modules": everything_else}),
        ("no import cycles inside a package", "acyclic_siblings", {"ancestors": ["neurokd"]}),
        ("the core's rooms in layers, top to bottom", "layers",
         {"containers": ["neurokd"], "layers": CORE_LAYERS}),
    ]
    # Type-only imports (TYPE_CHECKING blocks) count too: a circle of them is still a circle a
    # reader must follow, and the tree has none (a Protocol or plain arguments untie one).
    lines = ["[tool.importlinter]", 'root_package = "neurokd"',
             "exclude_type_checking_imports = false"]
    for name, kind, fields in rules:
        lines += ["", "[[tool.importlinter.contracts]]", f"name = {json.dumps(name)}",
                  f'type = "{kind}"']
        lines += [f"{key} = {json.dumps(value)}" for key, value in fields.items()]
    return "\n".join(lines) + "\n"


def unplaced_rooms(tree: Path) -> list[str]:
    """The core's modules and packages that ``CORE_LAYERS`` does not place (``__main__`` is the
    CLI's entry point, ``exporters`` and ``energy`` are outside the core)."""
    placed = {name.strip() for layer in CORE_LAYERS for name in layer.split("|")}
    return [m for m in _modules(tree / "neurokd", "neurokd")
            if m.rsplit(".", 1)[1] not in placed | {"__main__", "exporters", "energy"}]


def check(root: Path = ROOT, tree: Path | None = None) -> int:
    """lint-imports' exit code (0: every contract kept) for the checkout at ``root``."""
    tree = build_tree(root, tree or root / "build" / "import-tree")
    unplaced = unplaced_rooms(tree)
    if unplaced:
        print(f"lint_imports: place {', '.join(unplaced)} in CORE_LAYERS (tools/lint_imports.py)",
              file=sys.stderr)
        return 1
    config = tree / "importlinter.toml"
    config.write_text(contracts(tree))
    lint = Path(sys.executable).with_name("lint-imports")
    env = dict(os.environ, PYTHONPATH=str(tree))
    return subprocess.call([str(lint), "--config", str(config), "--no-cache"], env=env,
                           cwd=tree)


if __name__ == "__main__":
    raise SystemExit(check())
