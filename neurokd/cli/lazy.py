"""A click group whose commands are imported only when one runs: ``neurokd --help`` lists them
from the registry's summaries without importing torch, the exporters or the energy counter.

    >>> COMMANDS = {"plot": CommandEntry("plot", "plot", "Draw a run's training history.")}
    >>> @click.group(cls=LazyGroup, lazy=COMMANDS)
    ... def cli(): ...
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import click


@dataclass(frozen=True)
class CommandEntry:
    """One command of a lazy group: where it lives and the line ``--help`` lists for it (kept
    here, so listing needs no import; the loaded command takes it as its ``short_help``, so
    the two cannot differ)."""

    module: str     # in neurokd.cli
    attribute: str  # the click command in that module
    summary: str


class LazyGroup(click.Group):
    def __init__(self, *args, lazy: dict[str, CommandEntry], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.lazy)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        entry = self.lazy.get(name)
        if entry is None:
            return None
        module = importlib.import_module(f"{__package__}.{entry.module}")
        command = getattr(module, entry.attribute)
        command.short_help = entry.summary
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, entry.summary) for name, entry in self.lazy.items()]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
