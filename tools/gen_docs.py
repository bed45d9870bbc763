"""Blocks of README.md and docs/*.md generated from the code and the results files, never
written by hand.

Each generated block sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` markers.
``python tools/gen_docs.py`` rewrites every block; ``python tools/gen_docs.py --check`` (run by
tests/test_docs.py) fails when a committed block differs from what it generates, so a new
command, target, backend, method, profile or option cannot be missing from the docs, and a
measured figure (``tools/doc_figures.py``: the demo student of ``make figures`` and the other
files in benchmarks/results/) cannot be quoted other than as its results file holds it.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # doc_figures beside this file


def commands_list() -> str:
    """Every command of the ``COMMANDS`` registry (and a group's subcommands), with its
    arguments and its ``--help`` summary."""
    import click

    from neurokd.cli import cli

    lines = []

    def walk(command: click.Command, path: list[str], parent: click.Context | None) -> None:
        context = click.Context(command, info_name=path[-1], parent=parent)
        if isinstance(command, click.Group):
            for name in command.list_commands(context):
                walk(command.get_command(context, name), [*path, name], context)
            return
        arguments = [p.human_readable_name for p in command.params
                     if isinstance(p, click.Argument)]
        lines.append((" ".join([*path, *arguments]), command.get_short_help_str(limit=80)))

    root = click.Context(cli, info_name="neurokd")
    for name in cli.list_commands(root):
        walk(cli.get_command(root, name), ["neurokd", name], root)
    width = max(len(usage) for usage, _ in lines) + 2
    return "\n".join(f"    {usage:<{width}}# {summary}" for usage, summary in lines)


def targets_table() -> str:
    from neurokd.cli.export import FLAGS
    from neurokd.exporters.registry import EXPORTERS

    rows = ["| target | writes | what | target-only options |", "|---|---|---|---|"]
    for e in EXPORTERS.values():
        options = ", ".join(f"`{FLAGS[o]}`" for o in e.options if o in FLAGS) or "—"
        rows.append(f"| `{e.name}` | `*{e.suffix}` | {e.summary} | {options} |")
    return "\n".join(rows)


def backends_table() -> str:
    from neurokd.exporters.simulation import BACKENDS

    rows = ["| backend | runs | what |", "|---|---|---|"]
    rows += [f"| `{b.name}` | `*{b.suffix}` | {b.summary} |" for b in BACKENDS.values()]
    return "\n".join(rows)


def datasets_table() -> str:
    from neurokd.data import DATASETS

    rows = ["| `--dataset` | needs `--data-dir` | what |", "|---|---|---|"]
    rows += [f"| `{d.name}` | {'yes' if d.needs_data_dir else 'no'} | {d.summary} |"
             for d in DATASETS.values()]
    return "\n".join(rows)


def event_sets_table() -> str:
    from neurokd.data.event_sets import EVENT_SETS

    rows = ["| `--dataset` | `--data-dir` holds | files | test split | sensor, classes |",
            "|---|---|---|---|---|"]
    def cell(text: str) -> str:  # <digit> would be read as an HTML tag
        return text.replace("<", "&lt;").replace(">", "&gt;")

    rows += [f"| `{e.name}` | {cell(e.layout)} | {cell(e.file_format)} | {cell(e.split_rule)} | "
             f"{e.sensor[1]} x {e.sensor[0]}, {len(e.classes)} |" for e in EVENT_SETS.values()]
    return "\n".join(rows)


def encodings_table() -> str:
    from neurokd.data import EVENT_FRAMES
    from neurokd.data.encoding import ENCODINGS

    rows = ["| option | value | the student's first layer gets |", "|---|---|---|"]
    rows += [f"| `--encoding` | `{e.name}` | {e.summary} |" for e in ENCODINGS.values()]
    rows += [f"| `--event-frames` | `{name}` | {what} |" for name, what in EVENT_FRAMES.items()]
    return "\n".join(rows)


def cli_reference() -> str:
    """Every command's ``--help``, as the CLI prints it (80 columns)."""
    import click

    from neurokd.cli import cli

    parts = []

    def walk(command: click.Command, path: list[str], parent: click.Context | None) -> None:
        # a child context inherits the group's settings (-h as well as --help), as in a run
        context = click.Context(command, info_name=path[-1], parent=parent, terminal_width=80,
                                max_content_width=80, **command.context_settings)
        parts.append(f"### `{' '.join(path)}`\n\n```text\n{command.get_help(context)}\n```")
        if isinstance(command, click.Group):
            for name in command.list_commands(context):
                walk(command.get_command(context, name), [*path, name], context)

    walk(cli, ["neurokd"], None)
    return "\n\n".join(parts)


def exit_rules_table() -> str:
    """The exit rules of ``neurokd.anytime.EXIT_RULES`` (docs/anytime.md)."""
    from neurokd.anytime.docs import rules_table

    return rules_table()


# block name -> (file, generator). Other modules register theirs in GENERATORS below.
# The file is README.md (at the repository's root) or a page in docs/.
GENERATORS: dict[str, tuple[str, Callable[[], str]]] = {
    "commands-list": ("cli.md", commands_list),
    "targets-table": ("cli.md", targets_table),
    "backends-table": ("cli.md", backends_table),
    "cli-reference": ("cli.md", cli_reference),
    "datasets-table": ("data.md", datasets_table),
    "event-sets-table": ("data.md", event_sets_table),
    "encodings-table": ("data.md", encodings_table),
    "exit-rules-table": ("anytime.md", exit_rules_table),
}


def _registry_generators() -> None:
    """Tables owned by the loss and energy registries (their renderers live beside them), and
    the measured figures (tools/doc_figures.py)."""
    from doc_figures import BLOCKS

    from neurokd.energy.doc_tables import TABLES
    from neurokd.losses.docs import methods_table

    GENERATORS["methods-table"] = ("losses.md", methods_table)
    GENERATORS.update({name: ("energy.md", render) for name, render in TABLES.items()})
    GENERATORS.update(BLOCKS)


def page(file: str) -> Path:
    """README.md at the repository's root; any other name, a page in docs/."""
    return ROOT / file if file == "README.md" else DOCS / file


def _block(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- {name}:start -->\n)(.*?)(<!-- {name}:end -->)", re.S)


def regenerate(check: bool) -> list[str]:
    """Rewrite (or, with ``check``, compare) every block; the names of stale blocks."""
    _registry_generators()
    stale = []
    for name, (file, generate) in GENERATORS.items():
        path = page(file)
        text = path.read_text(encoding="utf-8")
        pattern = _block(name)
        if not pattern.search(text):
            stale.append(f"{file}: no <!-- {name}:start --> block")
            continue
        body = generate().lstrip("\n").rstrip() + "\n"  # an indented code block keeps its indent
        new = pattern.sub(lambda m, body=body: m.group(1) + body + m.group(3), text)
        if new != text:
            stale.append(f"{file}: {name}")
            if not check:
                path.write_text(new, encoding="utf-8")
    return stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail on stale blocks, write none")
    args = parser.parse_args()
    stale = regenerate(args.check)
    for entry in stale:
        print(("stale: " if args.check else "updated: ") + entry, file=sys.stderr)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
