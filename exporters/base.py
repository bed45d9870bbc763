"""What every export target is and gives back: :class:`Exporter` and :class:`ExportResult`.

An exporter is one call, ``export(source, path, **options) -> ExportResult``, plus a hook that
lists what the target cannot take (``limits(graph)``: ``"layer (reason)"`` strings, empty when
the graph fits). The registry (``exporters/registry.py``) maps target names to exporters; the
CLI's ``--target`` choices, default suffixes, target-only options and printing come from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .graph import StudentGraph
from .verify import Agreement


@dataclass
class ExportResult:
    """A written export: where, how big, what it was checked on and how closely it agreed."""

    path: Path
    file_bytes: int
    verified_on: str
    agreement: Agreement

    def summary_lines(self) -> list[str]:
        """What the CLI prints about the file, one string per line (no markup)."""
        return [f"wrote {self.path} ({self.file_bytes / 1024:.0f} kB)", self.agreement_line()]

    def agreement_line(self, consumer: str = "re-run") -> str:
        a = self.agreement
        spikes = ""
        if a.spikes_checked:
            spikes = ("spikes identical" if a.spike_mismatches == 0
                      else f"{a.spike_mismatches} spike mismatches")
            spikes += f" ({a.spikes_checked:,} checked), "
        ties = (f"; {a.tie_samples} sample{'s' * (a.tie_samples > 1)} apart: diverged from one "
                "spike flipped at a threshold tie (float rounding)" if a.tie_samples else "")
        return (f"  {consumer} on {self.verified_on}: max |Δlogit| {a.max_abs_logit_error:.1e}, "
                f"{spikes}argmax {100 * a.argmax_agreement:.2f}%{ties}")


@dataclass(frozen=True)
class Exporter:
    """One export target."""

    name: str
    suffix: str                                   # of the file it writes
    summary: str                                  # one line for --help and the docs
    export: Callable[..., ExportResult]           # export(source, path, **options)
    limits: Callable[[StudentGraph], list[str]]   # what the target cannot take, by layer
    options: tuple[str, ...] = ()                 # keyword options beyond the common ones
    # The stems of the files it writes beside a checkpoint by default: ``distill --overwrite``
    # removes them with the run they were made from (a new target's files must not outlive it).
    stems: tuple[str, ...] = ("student",)

    def default_path(self, folder: Path, stem: str) -> Path:
        return folder / f"{stem}{self.suffix}"

    @property
    def default_names(self) -> tuple[str, ...]:
        """The file names it writes into a run folder by default, e.g. ``("student.nir",)``."""
        return tuple(f"{stem}{self.suffix}" for stem in self.stems)


# Every target accepts these: the check's sample count and which inputs it runs on.
COMMON_OPTIONS = ("max_samples", "dataset", "data_dir", "random_inputs")
