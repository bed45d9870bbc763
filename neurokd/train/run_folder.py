"""One run folder, one run: a lock while a run writes it, no silent reuse, no changed resume.

- A run holds ``RUN/.neurokd.lock`` (an ``flock``, released by the kernel even if the process
  dies) while it writes the folder; a second run on the same folder is refused, naming the
  first run's pid. Two runs can no longer leave a folder with one's ``config.toml`` and the
  other's ``student.pt``.
- A new run into a folder that already holds a run is refused unless ``--overwrite``, which
  first removes the old run's files and the exports made from its checkpoint (they would
  describe a model that no longer exists). Which files the exports are is the exporters'
  registry's to say (``exporters.registry.default_export_names``): the caller hands the names
  in, so the core imports no exporter.
- ``--resume`` compares the settings in ``config.toml`` with the ones the interrupted run saved
  in its training state and refuses a changed run, naming the field.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..files.safe_io import make_folder

LOCK = ".neurokd.lock"
RUN_FILES = ("config.toml", "student.pt", "teacher.pt", "metrics.json", "last.pt",
             "last-teacher.pt", "training.png")
# Settings a resume may change: where the run lives and the device it continues on.
RESUMABLE_CHANGES = ("out", "name", "device")


@contextlib.contextmanager
def claimed(run_dir: Path, resume: bool, overwrite: bool, writer: bool = True,
            exports: tuple[str, ...] = ()) -> Iterator[Path]:
    """The run folder, locked for this process, checked (and cleared on ``overwrite``: the
    run's files and the ``exports`` file names made from it)."""
    if not writer:  # torchrun ranks > 0 write nothing
        yield run_dir
        return
    make_folder(run_dir)
    with open(run_dir / LOCK, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise ConfigError(f"{run_dir} is being written by another neurokd run (pid "
                              f"{holder}); wait for it or choose another name") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        if not resume:
            _make_room(run_dir, overwrite, exports)
        try:
            yield run_dir
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _make_room(run_dir: Path, overwrite: bool, exports: tuple[str, ...]) -> None:
    existing = [name for name in RUN_FILES if (run_dir / name).exists()]
    if not existing:
        return
    if not overwrite:
        # Words both callers understand: --name/--resume/--overwrite on the command line,
        # RunConfig(name=...)/resume=True/overwrite=True from Python.
        raise ConfigError(f"{run_dir} already holds a run ({', '.join(existing)}): choose "
                          "another name, resume it or overwrite it")
    for name in RUN_FILES + tuple(exports):
        (run_dir / name).unlink(missing_ok=True)


def check_resume(saved: dict[str, Any], stored: dict[str, Any] | None, where: Path) -> None:
    """Refuse to resume when config.toml (``saved``) differs from the settings the
    interrupted run trained with (``stored``, from its training state)."""
    if not stored:
        return  # a state from before settings were stored: nothing to compare
    for key, value in stored.items():
        if key in RESUMABLE_CHANGES or key in ("input_shape", "num_classes", "threads"):
            continue
        if saved.get(key) != value:
            raise ConfigError(f"--resume: {where} says {key} = {saved.get(key)!r} but the "
                              f"interrupted run trained with {key} = {value!r}; put it back, "
                              "or start a new run")
