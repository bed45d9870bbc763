"""What every results file of benchmarks/ carries: the machine, its load, the files written."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from pathlib import Path

from neurokd.files.safe_io import write_json, write_text


def machine() -> dict[str, str]:
    """The machine and its load average now (before the run: the figures depend on it)."""
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return {"machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs",
            "load": f"load average {load}"}


def publish(folder: Path, stem: str, figures: dict, render: Callable[[dict], str]) -> None:
    """``FOLDER/STEM.json`` and ``FOLDER/STEM.md`` (``results_dir.folder``); the markdown is
    printed too."""
    write_json(folder / f"{stem}.json", figures)
    text = render(figures)
    write_text(folder / f"{stem}.md", text)
    print(text)
