"""An :class:`EnergyReport` as a rich table, a JSON file and a PNG plot; the profiles as a table.

The count columns and the profile columns come from the registry (``quantities.py``)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from neurokd.files.safe_io import write_json

from ..energy.pricing import EnergyReport
from ..energy.profiles import BUILTIN, EnergyProfile, profile_keys
from ..energy.quantities import COSTS, energy_key, energy_model
from .figure import plot_text, pyplot, write_png


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


def _break_even_text(rate: float | None) -> str:
    if rate is None:
        return "—"
    return "never" if rate <= 0 else "any" if rate >= 1 else f"{rate:.4f}"


def _cheaper_text(result: EnergyReport, layer) -> str:
    rate = result.break_even(layer)
    if rate is None or layer.input_event_rate is None:
        return ""
    return "yes" if layer.input_event_rate < rate else "no"


def _title(result: EnergyReport) -> str:
    model = energy_model(result.energy_model)
    layout = f", {result.memory_layout} words" if any(q.access for q in model.quantities) else ""
    return (f"neurokd energy · {result.source} · {result.profile.name} · {model.name} model"
            f"{layout} · counted on {result.counted_on}, {result.inputs}, "
            f"T={result.timesteps} · per inference")


def _rows(result: EnergyReport) -> tuple[list[str], list[list[str]], int]:
    """The report as headers and rows of text, and how many rows are layers (the rest: the
    totals, the ANN and the ratio, drawn below a line)."""
    model = energy_model(result.energy_model)
    columns = [q for q in result.quantities if q.header is not None]
    parts = list(model.parts) if len(model.parts) > 1 else []
    headers = ["layer", "kind", "input rate", *(q.header for q in columns), "output rate",
               *parts, "energy", "break-even", "cheaper"]
    rows = [[layer.name, layer.kind, _rate(layer.input_event_rate),
             *(_count(layer.counts[q.name]) for q in columns), _rate(layer.output_firing_rate),
             *(energy_text(layer.part_energy_pj[p]) for p in parts),
             energy_text(layer.energy_pj), _break_even_text(result.break_even(layer)),
             _cheaper_text(result, layer)] for layer in result.layers]
    totals = result.totals()
    rows.append(["SNN total", "", "", *(_count(totals[q.name]) for q in columns), "",
                 *(energy_text(totals[energy_key(p)]) for p in parts),
                 energy_text(result.snn_energy_pj), "", ""])
    if result.ann:
        ann = result.ann_totals()  # only the quantities the ANN counts; the others stay blank
        priced_by = f" ({result.ann_profile})" if result.ann_profile else ""
        rows.append([f"ANN: {result.ann}{priced_by}", "MACs", "",
                     *(_count(ann[q.name]) if q.name in ann else "" for q in columns), "",
                     *(energy_text(ann.get(energy_key(p), 0.0)) for p in parts),
                     energy_text(result.ann_energy_pj), "", ""])
        ratio = "—" if result.ratio is None else f"{result.ratio:.3f}"  # None: ANN costs 0 pJ
        rows.append(["SNN / ANN energy", "", "", *([""] * len(columns)), "",
                     *([""] * len(parts)), ratio, "", ""])
    return headers, rows, len(result.layers)


def _make_table(title: str, headers: list[str], rows: list[list[str]], layers: int,
                keep: list[int]) -> Table:
    table = Table(title=title)
    for k in keep:
        # a number is never cut to "…": its column is at least as wide as its widest cell
        widest = max((len(row[k]) for row in rows), default=0)
        table.add_column(headers[k], justify="left" if k < 2 else "right",
                         no_wrap=k == 0, min_width=widest if k >= 2 else None)
    for n, row in enumerate(rows):
        if n == layers:
            table.add_section()
        if n < layers or any(row[k] for k in keep[1:]):  # a split table drops blank totals
            table.add_row(*(row[k] for k in keep))
    return table


def _tables(result: EnergyReport, width: int) -> list[Table]:
    """One table where it fits ``width`` columns; else the counts and the energy as two tables,
    or three (a model's energy parts apart from the total): each under 80 columns for
    neurokd's students, never a number cut short. Empty when none fits."""
    title = _title(result)
    headers, rows, layers = _rows(result)
    everything = list(range(len(headers)))
    energy_from = headers.index("output rate") + 1
    total_from = headers.index("energy")
    counts = [0, *range(1, energy_from)]
    layouts = [[everything], [counts, [0, *range(energy_from, len(headers))]]]
    if total_from > energy_from:  # a model with parts (memory): the parts apart from the total
        layouts.append([counts, [0, *range(energy_from, total_from)],
                        [0, *range(total_from, len(headers))]])
    for layout in layouts:
        tables = [_make_table(title if i == 0 else "", headers, rows, layers, keep)
                  for i, keep in enumerate(layout)]
        if all(_fits(t, width) for t in tables):
            return tables
    return []  # narrower still: print_report lists the values line by line


def _fits(table: Table, width: int) -> bool:
    """Whether rich draws ``table`` in ``width`` columns without cutting a cell to "…" (headers
    may wrap; numbers may not be shortened): tried, since rich's own measure overestimates."""
    import io

    out = io.StringIO()
    Console(width=width, file=out, color_system=None, force_terminal=False).print(table)
    return "…" not in out.getvalue()


def _lines(result: EnergyReport) -> list[str]:
    """The report as ``layer: header value, ...`` lines, for a terminal too narrow for a table."""
    headers, rows, _ = _rows(result)
    def whole(text: str) -> str:  # a value and its unit are never split across two lines
        return text.replace(" ", "\u00a0")

    return [f"{row[0]}: " + ", ".join(f"{h} {whole(v)}" for h, v in zip(
        headers[1:], row[1:], strict=True) if v) for row in rows]


def _console() -> Console:
    console = Console()
    # Pipes and CI logs get 80 columns by default, which folds layer names: widen them.
    return console if console.is_terminal else Console(width=170)


def _print_tables(console: Console, result: EnergyReport) -> None:
    tables = _tables(result, console.width)
    for table in tables:
        console.print(table)
    if not tables:
        console.print(_title(result), markup=False, highlight=False)
        for line in _lines(result):
            console.print(line, markup=False, highlight=False, overflow="fold")


def print_report(result: EnergyReport, console: Console | None = None) -> None:
    console = console or _console()
    _print_tables(console, result)
    console.print("MACs: layers whose input is analog (the encoding layer), priced per MAC; "
                  "SOPs: input spikes x fan-out, priced per synaptic op", markup=False,
                  highlight=False)
    console.print(f"profile {result.profile.name}: {result.profile.source}", markup=False,
                  highlight=False)
    if any(result.break_even(layer) is not None for layer in result.layers):
        console.print("break-even rate: the input spike rate below which the layer costs less "
                      "than the ANN layer of its name (never: not even silent; any: at every "
                      "rate)", markup=False, highlight=False)
    if result.note:
        console.print(f"note: {result.note}", markup=False, highlight=False)
    if result.neurobench:
        console.print(_neurobench_line(result.neurobench), markup=False, highlight=False)
    for line in anytime_lines(result):
        console.print(line, markup=False, highlight=False)
    deployed = result.deployed
    if deployed is not None:
        _print_tables(console, deployed)
        for line in anytime_lines(deployed):
            console.print(f"deployed: {line}", markup=False, highlight=False)
        line = (f"deployed ({deployed.counted_on}, {deployed.source}): "
                f"{energy_text(deployed.snn_energy_pj)} per inference vs float estimate "
                f"{energy_text(result.snn_energy_pj)}")
        if result.snn_energy_pj:
            line += f" ({deployed.snn_energy_pj / result.snn_energy_pj:.3f}x)"
        console.print(line, markup=False, highlight=False)


def anytime_lines(result: EnergyReport) -> list[str]:
    """The exit's energy beside full T's, its mean timesteps and accuracy, and the accuracy of
    the prediction after each timestep (docs/anytime.md)."""
    lines = []
    exit = result.exit
    if exit is not None:
        from ..anytime import get_rule

        origin = {"run": "the run's exit", "simulation": "the simulated run's exit"}.get(
            exit["origin"], "exit")
        sign = get_rule(exit["rule"]).comparison
        accuracy = "" if exit["accuracy"] is None else f", accuracy {100 * exit['accuracy']:.2f}%"
        lines.append(f"{origin} {exit['rule']} {sign} {exit['threshold']:.4g}: mean "
                     f"{exit['mean_timesteps']:.2f} of T={result.timesteps} timesteps{accuracy}")
        ratio = "—" if result.exit_ratio is None else f"{result.exit_ratio:.3f}x"
        lines.append(f"SNN energy per inference: {energy_text(result.snn_energy_pj)} with the "
                     f"exit, {energy_text(result.snn_energy_full_pj)} at full T ({ratio})")
    if result.accuracy_by_timestep:
        lines.append("accuracy by timestep (steps 1..t): " + ", ".join(
            f"t={t} {100 * a:.2f}%" for t, a in enumerate(result.accuracy_by_timestep, 1)))
    return lines


def _neurobench_line(metrics: dict) -> str:
    ops = metrics["SynapticOperations"]
    sparsity = metrics["ActivationSparsity"]
    return (f"NeuroBench: Footprint {metrics['Footprint']:,} B, ConnectionSparsity "
            f"{metrics['ConnectionSparsity']:.4f}, ActivationSparsity "
            f"{'—' if sparsity is None else f'{sparsity:.4f}'}, SynapticOperations per sample: "
            f"Effective_MACs {ops['Effective_MACs']:,.0f}, Effective_ACs "
            f"{ops['Effective_ACs']:,.0f}, Dense {ops['Dense']:,.0f}")


def _cost_text(profile: EnergyProfile, key: str) -> str:
    return f"{profile.costs[key]:g}" if key in profile.costs else "—"  # not priced there


def print_profiles(profiles: dict[str, EnergyProfile] | None = None,
                   sources: bool = False) -> None:
    """The profiles' costs as a table, each profile's source (and with ``sources``, each
    cost's)."""
    table = Table(title="neurokd energy profiles (pJ per unit; SRAM: pJ per byte)")
    table.add_column("name", justify="left")
    for cost in COSTS:
        table.add_column(cost.header, justify="right")
    chosen = profiles or BUILTIN
    for profile in chosen.values():
        table.add_row(profile.name, *(_cost_text(profile, cost.key) for cost in COSTS))
    console = _console()
    console.print(table)
    for profile in chosen.values():
        extra = f"; memory layout {profile.memory_layout}" + (
            f"; the ANN reference priced by {profile.ann_profile}" if profile.ann_profile else "")
        console.print(f"{profile.name}: {profile.source}{extra}", markup=False,
                      highlight=False)
        if sources:
            for key in profile.costs:
                console.print(f"  {key}: {profile.cost_source(key)}", markup=False,
                              highlight=False)
    console.print(f"any TOML file with keys {', '.join(profile_keys())} is a profile too: "
                  "--profile my-chip.toml", markup=False, highlight=False)


def write_report_json(result: EnergyReport, path: str | Path) -> Path:
    return write_json(path, result.to_dict())


def plot_title(result: EnergyReport) -> str:
    """What was counted, on what, priced how (first line) and the SNN / ANN ratio (second)."""
    inputs = result.inputs if "sample" in result.inputs else \
        f"{result.inputs} ({result.samples} samples)"
    head = (f"{result.model or result.source} · {inputs} · T={result.timesteps} · profile "
            f"{result.profile.name} · {result.energy_model} model")
    if result.exit is not None:  # the bars are the exit's energy: say so, and the full T's
        head += (f" · exit {result.exit['rule']} (mean {result.exit['mean_timesteps']:.2f} "
                 f"steps; {energy_text(result.snn_energy_full_pj)} at full T)")
    if result.ratio is None:
        tail = (f"SNN {energy_text(result.snn_energy_pj)} per inference"
                + ("" if result.ann else "; no ANN reference"))
    else:
        # an ANN priced under another profile (a GPU's for a chip's SNN) is said, not implied
        other = (f" (the ANN priced under profile {result.ann_profile})"
                 if result.ann_profile and result.ann_profile != result.profile.name else "")
        tail = (f"SNN / ANN energy = {result.ratio:.3f}: SNN "
                f"{energy_text(result.snn_energy_pj)} vs ANN {result.ann} "
                f"{energy_text(result.ann_energy_pj)} per inference{other}")
    return f"{head}\n{tail}"


def energy_figure(result: EnergyReport):
    """The report as a matplotlib figure. Left: per-layer energy bars (log axis, each bar
    labelled) of the SNN and of the ANN layer of the same name (and the totals), stacked by
    part (compute / addressing / memory under the memory model). Right: per layer, the
    measured input rate beside the break-even rate and the output firing rate; an analog
    input (direct encoding's first layer) is drawn hatched: it is the share of non-zero
    values, not a spike rate."""
    plt = pyplot()

    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 6.4))
    figure.suptitle("\n".join(plot_text(line, 300) for line in plot_title(result).split("\n")),
                    fontsize=11)
    _energy_bars(left, result)
    _rate_bars(right, result)
    figure.tight_layout()
    return figure


def write_plot(result: EnergyReport, path: str | Path) -> Path:
    """:func:`energy_figure` as a PNG (whole or not at all)."""
    return write_png(energy_figure(result), path)


def _energy_stacks(result: EnergyReport, side: str) -> dict[str, list[float]]:
    """{part: pJ per bar} for the SNN or the ANN side: one bar per SNN layer, then the total."""
    ann_by_name = {layer.name: layer for layer in result.ann_layers}
    totals = result.totals() if side == "SNN" else result.ann_totals()
    stacks = {}
    for part in energy_model(result.energy_model).parts:
        if side == "SNN":
            values = [layer.part_energy_pj.get(part, 0.0) for layer in result.layers]
        else:
            values = [ann_by_name[layer.name].part_energy_pj.get(part, 0.0)
                      if layer.name in ann_by_name else 0.0 for layer in result.layers]
        stacks[part] = [*values, totals.get(energy_key(part), 0.0)]
    return stacks


def _energy_bars(axes, result: EnergyReport) -> None:
    import numpy as np

    names = [plot_text(layer.name) for layer in result.layers] + ["total"]
    x = np.arange(len(names))
    width = 0.4 if result.ann else 0.8
    shades = {"compute": 1.0, "addressing": 0.65, "memory": 0.35}
    sides = (("SNN", -width / 2, "tab:blue"), ("ANN", width / 2, "tab:orange")) \
        if result.ann else (("SNN", 0.0, "tab:blue"),)
    smallest = []
    for side, offset, color in sides:
        stacks = _energy_stacks(result, side)
        bottom = np.zeros(len(names))
        for part, values_pj in stacks.items():
            values = np.array(values_pj) / 1e3
            label = side if len(stacks) == 1 else f"{side} {part}"
            axes.bar(x + offset, values, width, bottom=bottom, label=label, color=color,
                     alpha=shades[part], edgecolor="black", linewidth=0.4)
            bottom += values
        for position, total in zip(x + offset, bottom, strict=True):
            if total > 0:  # the bar's value on it: small layers stay readable
                axes.annotate(energy_text(total * 1e3), (position, total), ha="center",
                              va="bottom", fontsize=7, xytext=(0, 2),
                              textcoords="offset points")
        smallest += [value for value in bottom if value > 0]
    axes.set_yscale("log")
    if smallest:  # room below the smallest bar and above the largest for its label
        axes.set_ylim(min(smallest) / 3, max(smallest) * 4)
    axes.set_xticks(x, names, rotation=30, ha="right")
    axes.set_ylabel("energy per inference (nJ, log scale)")
    axes.set_title("energy per layer" + (f": SNN vs ANN ({plot_text(result.ann)})" if result.ann else ""))
    axes.legend(fontsize=8, loc="upper left")


def _rate_bars(axes, result: EnergyReport) -> None:
    import numpy as np

    layers = result.layers
    x = np.arange(len(layers))
    analog = [layer.rate_line_pj is None and bool(layer.counts.get("macs")) for layer in layers]
    measured = np.array([layer.input_event_rate or 0.0 for layer in layers])
    spiking = np.where(analog, 0.0, measured)
    axes.bar(x - 0.27, spiking, 0.27, label="input spike rate (spikes / input / step)",
             color="tab:blue")
    if any(analog):
        axes.bar(x - 0.27, np.where(analog, measured, 0.0), 0.27, color="white",
                 edgecolor="tab:blue", hatch="//",
                 label="analog input: share of non-zero values, not spikes")
    breaks = [result.break_even(layer) for layer in layers]
    shown = [min(max(rate, 0.0), 1.0) if rate is not None else 0.0 for rate in breaks]
    axes.bar(x, shown, 0.27, label="break-even input rate (clipped to [0, 1])", color="tab:red")
    for position, rate, is_analog in zip(x, breaks, analog, strict=True):
        if is_analog:
            axes.annotate("analog input,\nnot spikes", (position - 0.27, measured[position]),
                          ha="center", va="bottom", fontsize=7, xytext=(0, 2),
                          textcoords="offset points")
        elif rate is None or rate <= 0 or rate >= 1:
            text = "no ANN layer" if rate is None else _break_even_text(rate)
            axes.annotate(text, (position, 0.01), ha="center", va="bottom", fontsize=7,
                          rotation=90)
    outputs = [layer.output_firing_rate or 0.0 for layer in layers]
    axes.bar(x + 0.27, outputs, 0.27, label="output firing rate (spikes / neuron / step)",
             color="tab:gray")
    # The verdict above each layer, and counted in the title: the finding is read at a glance,
    # not worked out from bar heights (rates are small: the axis follows the data, not [0, 1]).
    top = max([*measured, *shown, *outputs, 0.05]) * 1.25
    verdicts = [_cheaper_text(result, layer) for layer in layers]
    for position, verdict in zip(x, verdicts, strict=True):
        if verdict:
            axes.annotate("cheaper" if verdict == "yes" else "costlier", (position, top / 1.25),
                          ha="center", va="bottom", fontsize=8, fontweight="bold",
                          color="tab:green" if verdict == "yes" else "tab:red",
                          xytext=(0, 6), textcoords="offset points")
    judged = [v for v in verdicts if v]
    below = sum(v == "yes" for v in judged)
    axes.set_xticks(x, [plot_text(layer.name) for layer in layers], rotation=30, ha="right")
    axes.set_ylim(0, top * 1.12)
    axes.set_ylabel("rate per input or neuron and timestep")
    axes.set_title((f"{below} of {len(judged)} spiking layers below break-even (cheaper than "
                    "the ANN layer)" if judged else "no layer has a break-even rate"),
                   fontsize=10)
    axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2)
