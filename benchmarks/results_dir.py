"""Where a benchmark writes its results: benchmarks/runs/results/ unless asked otherwise.

The committed figures live in benchmarks/results/; a benchmark run for a look, a test or a
different machine must not overwrite them. ``--publish`` writes there (what the README's
figures come from); ``--results DIR`` anywhere else.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMMITTED = HERE / "results"
SCRATCH = HERE / "runs" / "results"


def _shown(path: Path) -> str:
    return str(path.relative_to(HERE.parent)) if path.is_relative_to(HERE.parent) else str(path)


def add_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--publish", action="store_true",
                       help=f"write the committed results in {_shown(COMMITTED)}")
    group.add_argument("--results", type=Path, default=None,
                       help=f"results folder (default: {_shown(SCRATCH)})")


def folder(args: argparse.Namespace) -> Path:
    chosen = COMMITTED if args.publish else (args.results or SCRATCH)
    chosen.mkdir(parents=True, exist_ok=True)
    return chosen
