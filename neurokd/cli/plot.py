"""``neurokd plot``: a run's training history as a PNG."""

from __future__ import annotations

from pathlib import Path

import click

from .options import output_option


@click.command()  # its one line: COMMANDS in neurokd/cli/__init__.py
@click.argument("run", type=click.Path())
@output_option("-o", "--output", "PNG to write (default: RUN/training.png)")
def plot(run: str, output: str | None) -> None:
    """Draw a run's metrics.json history: loss terms, accuracies, firing rates, learning rate.

    \b
    Examples:
      neurokd plot runs/demo
      neurokd plot runs/demo/metrics.json -o demo.png
    """
    from ..files.safe_io import check_writable
    from .console import print_lines
    from .history_plot import write_history_plot

    if output:
        check_writable(output, reads=(run, Path(run) / "metrics.json"))
    print_lines([f"wrote {write_history_plot(run, output)}"])
