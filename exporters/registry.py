"""Every export target by name. The CLI's ``--target`` choices, output suffixes, target-only
options and the docs table come from here: a new target is one module plus one line below."""

from __future__ import annotations

from neurokd.errors import ConfigError

from .base import Exporter
from .loihi import export as loihi
from .nir import export as nir
from .onnx import export as onnx

EXPORTERS: dict[str, Exporter] = {e.name: e for e in (
    onnx.EXPORTER,
    nir.EXPORTER,
    loihi.EXPORTER,
)}


def exporter(name: str) -> Exporter:
    if name not in EXPORTERS:
        raise ConfigError(f"unknown export target {name!r}; choose from {', '.join(EXPORTERS)}")
    return EXPORTERS[name]


def default_export_names() -> tuple[str, ...]:
    """Every file name an export writes into a run folder by default, over all targets."""
    return tuple(name for e in EXPORTERS.values() for name in e.default_names)


def targets_taking(option: str) -> list[str]:
    """The targets whose exporter accepts the keyword ``option``."""
    return [name for name, e in EXPORTERS.items() if option in e.options]
