"""``neurokd simulate``: run an export on a test split in a simulator, one registry of backends.

``BACKENDS`` maps a name to a :class:`Backend`: the file it runs, what it checks, and
``run(export, dataset=None, samples=None, reporter=None, data_dir=None, exit_rule=None,
exit_threshold=None, no_exit=False) -> SimulationResult`` (the exit options: ``anytime.py``).
The CLI's ``--backend`` choices, its default (picked from the file's suffix) and the docs come
from this registry: a new simulator is one module plus one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from neurokd.errors import ConfigError
from neurokd.runtime.progress import Reporter

from .anytime import check_exit_options
from .lava_backend import simulate_lava
from .onnx_backend import simulate_onnx
from .result import SimulationResult, write_result


@dataclass(frozen=True)
class Backend:
    name: str
    suffix: str                  # the export it runs (``neurokd export`` writes it)
    summary: str                 # one line for --help and the docs
    run: Callable[..., SimulationResult]
    # The `neurokd export` options that write that file: a missing export's error names the
    # command that makes it.
    made_by: tuple[str, ...] = ()


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("lava", ".net", "a Loihi export in Lava's CPU simulator, bit-accurate fixed point "
            "(.venv-lava), against the float and integer models", simulate_lava,
            ("--target", "loihi")),
    Backend("onnx", ".onnx", "an ONNX export made with --spikes, in ONNX Runtime", simulate_onnx,
            ("--target", "onnx", "--spikes")),
)}


def backend_for(export: str | Path, backend: str | None = None) -> Backend:
    """The backend named, else the one whose export has ``export``'s suffix."""
    if backend is not None:
        if backend not in BACKENDS:
            raise ConfigError(f"unknown simulation backend {backend!r}; choose from "
                              f"{', '.join(BACKENDS)}")
        return BACKENDS[backend]
    suffix = Path(export).suffix.lower()
    for candidate in BACKENDS.values():
        if candidate.suffix == suffix:
            return candidate
    known = ", ".join(f"{b.suffix} ({b.name})" for b in BACKENDS.values())
    raise ConfigError(f"{export}: cannot tell the backend from the suffix {suffix or '(none)'!r}"
                      f" (known: {known}); give --backend")


def simulate(export: str | Path, backend: str | None = None, dataset: str | None = None,
             samples: int | None = None, reporter: Reporter | None = None,
             data_dir: str | None = None, exit_rule: str | None = None,
             exit_threshold: float | None = None, no_exit: bool = False) -> SimulationResult:
    """Run ``export`` on the first ``samples`` test samples of ``dataset`` (default: the data
    set recorded in the export) with ``backend`` (default: by the file's suffix). The early
    exit reported (and counted for ``write_result``): ``exit_rule`` at ``exit_threshold``, else
    the one the export records; ``no_exit``: none (docs/anytime.md)."""
    if samples is not None and samples < 1:
        raise ConfigError(f"--samples must be >= 1, not {samples}")
    check_exit_options(exit_rule, exit_threshold, no_exit)
    chosen = backend_for(export, backend)
    return chosen.run(export, dataset=dataset, samples=samples, reporter=reporter,
                      data_dir=data_dir, exit_rule=exit_rule, exit_threshold=exit_threshold,
                      no_exit=no_exit)


__all__ = ["BACKENDS", "Backend", "SimulationResult", "backend_for", "check_exit_options",
           "simulate", "write_result"]
