"""An :class:`EnergyReport` as a rich table, a JSON file and a PNG plot; the profiles as a table.

The count columns and the profile columns come from the registry (``quantities.py``)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from neurokd.fileio import atomic_path, write_json

from .pricing import EnergyReport
from .profiles import BUILTIN, EnergyProfile, profile_keys
from .quantities import COSTS


def energy_text(pj: float | None) -> str:
    if pj is None:
        return "—"
    for unit, scale in (("mJ", 1e9), ("µJ", 1e6), ("nJ", 1e3)):
        if abs(pj) >= scale:
            return f"{pj / scale:.3g} {unit}"
    return f"{pj:.3g} pJ"


def _count(value: float) -> str:
    return "—" if not value else f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _table(result: EnergyReport) -> Table:
    title = (f"neurokd energy · {result.source} · {result.profile.name} · counted on "
             f"{result.counted_on}, {result.inputs}, T={result.timesteps} · per inference")
    columns = [q for q in result.quantities if q.header is not None]
    table = Table(title=title)
    for header in ("layer", "kind", "input rate", *(q.header for q in columns), "output rate",
                   "energy"):
        table.add_column(header, justify="left" if header in ("layer", "kind") else "right",
                         no_wrap=header == "layer")
    for layer in result.layers:
        table.add_row(layer.name, layer.kind, _rate(layer.input_event_rate),
                      *(_count(layer.counts[q.name]) for q in columns),
                      _rate(layer.output_firing_rate), energy_text(layer.energy_pj))
    totals = result.totals()
    table.add_section()
    table.add_row("SNN total", "", "", *(_count(totals[q.name]) for q in columns), "",
                  energy_text(result.snn_energy_pj))
    if result.ann:
        ann = result.ann_totals()  # only the quantities the ANN counts; the others stay blank
        table.add_row(f"ANN: {result.ann}", "MACs", "",
                      *(_count(ann[q.name]) if q.name in ann else "" for q in columns), "",
                      energy_text(result.ann_energy_pj))
        ratio = "—" if result.ratio is None else f"{result.ratio:.3f}"  # None: ANN costs 0 pJ
        table.add_row("SNN / ANN energy", "", "", *([""] * len(columns)), "", ratio)
    return table


def _console() -> Console:
    console = Console()
    # Pipes and CI logs get 80 columns by default, which folds layer names: widen them.
    return console if console.is_terminal else Console(width=150)


def print_report(result: EnergyReport, console: Console | None = None) -> None:
    console = console or _console()
    console.print(_table(result))
    console.print("MACs: layers whose input is analog (the encoding layer), priced per MAC; "
                  "SOPs: input spikes x fan-out, priced per synaptic op", markup=False,
                  highlight=False)
    console.print(f"profile {result.profile.name}: {result.profile.source}", markup=False,
                  highlight=False)
    if result.note:
        console.print(f"note: {result.note}", markup=False, highlight=False)
    deployed = result.deployed
    if deployed is not None:
        console.print(_table(deployed))
        line = (f"deployed ({deployed.counted_on}, {deployed.source}): "
                f"{energy_text(deployed.snn_energy_pj)} per inference vs float estimate "
                f"{energy_text(result.snn_energy_pj)}")
        if result.snn_energy_pj:
            line += f" ({deployed.snn_energy_pj / result.snn_energy_pj:.3f}x)"
        console.print(line, markup=False, highlight=False)


def _cost_text(profile: EnergyProfile, key: str) -> str:
    return f"{profile.costs[key]:g}" if key in profile.costs else "—"  # not priced there


def print_profiles(profiles: dict[str, EnergyProfile] | None = None) -> None:
    table = Table(title="neurokd energy profiles (pJ per operation)")
    table.add_column("name", justify="left")
    for cost in COSTS:
        table.add_column(cost.header, justify="right")
    chosen = profiles or BUILTIN
    for profile in chosen.values():
        table.add_row(profile.name, *(_cost_text(profile, cost.key) for cost in COSTS))
    console = _console()
    console.print(table)
    for profile in chosen.values():
        console.print(f"{profile.name}: {profile.source}", markup=False, highlight=False)
    console.print(f"any TOML file with keys {', '.join(profile_keys())} is a profile too: "
                  "--profile my-chip.toml", markup=False, highlight=False)


def write_report_json(result: EnergyReport, path: str | Path) -> Path:
    return write_json(path, result.to_dict())


def write_plot(result: EnergyReport, path: str | Path) -> Path:
    """Per-layer energy bars (SNN, and the ANN where a layer of the same name exists, plus the
    totals) on the left; input and output firing rates per layer on the right."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed (CI, ssh)
    import matplotlib.pyplot as plt
    import numpy as np

    names = [layer.name for layer in result.layers] + ["total"]
    ann_by_name = {layer.name: layer.energy_pj for layer in result.ann_layers}
    snn = [layer.energy_pj for layer in result.layers] + [result.snn_energy_pj]
    ann = [ann_by_name.get(layer.name, 0.0) for layer in result.layers] + \
          [result.ann_energy_pj or 0.0]
    x = np.arange(len(names))
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.4 if result.ann else 0.8
    left.bar(x - (width / 2 if result.ann else 0), np.array(snn) / 1e3, width, label="SNN")
    if result.ann:
        left.bar(x + width / 2, np.array(ann) / 1e3, width, label=f"ANN ({result.ann})")
    left.set_xticks(x, names, rotation=30, ha="right")
    left.set_ylabel("energy per inference (nJ)")
    left.set_title(f"energy · {result.profile.name}")
    left.legend()
    rates = [layer.input_event_rate or 0.0 for layer in result.layers]
    out_rates = [layer.output_firing_rate or 0.0 for layer in result.layers]
    xr = np.arange(len(result.layers))
    right.bar(xr - 0.2, rates, 0.4, label="input events / position / step")
    right.bar(xr + 0.2, out_rates, 0.4, label="output spikes / neuron / step")
    right.set_xticks(xr, names[:-1], rotation=30, ha="right")
    right.set_title("firing rates")
    right.legend()
    figure.tight_layout()
    try:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(figure)
    return Path(path)
