"""``neurokd energy``: energy per inference of a student (``report``, in energy_report.py) and
the hardware profiles it is priced with (``profiles``)."""

from __future__ import annotations

import click

from .lazy import CommandEntry, LazyGroup

ENERGY_COMMANDS = {
    "report": CommandEntry("energy_report", "energy_report",
                           "Per-layer SOPs, MACs, neuron updates and energy."),
    "profiles": CommandEntry("energy", "energy_profiles", "The built-in hardware cost tables."),
}


@click.group(cls=LazyGroup, lazy=ENERGY_COMMANDS)
def energy() -> None:
    """Energy per inference: SOPs, MACs and spikes counted on real inputs, priced per chip."""


@click.command("profiles")  # its one line: ENERGY_COMMANDS above
@click.option("--sources", is_flag=True, help="also print where each cost comes from")
def energy_profiles(sources) -> None:
    """List the built-in energy profiles (pJ per unit) and their sources.

    \b
    Examples:
      neurokd energy profiles
      neurokd energy profiles --sources          # where each cost comes from
      neurokd energy report runs/demo/student.pt --profile my-chip.toml   # a profile of yours
    """
    from .energy_render import print_profiles

    print_profiles(sources=sources)
