"""What the CLI prints (kept apart so the library itself prints nothing)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..text import pct


def print_distill_summary(result) -> None:
    m = result.metrics
    table = Table(title=f"neurokd distill · {result.config.run_name}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("teacher accuracy (test)", pct(m["teacher_accuracy"]))
    table.add_row(f"student accuracy (test, {m['method']}, T={m['timesteps']})",
                  pct(m["student_accuracy"]))
    if m.get("accuracy_by_timestep"):
        table.add_row("accuracy, steps 1..t (test, t=1..T)", _curve(m["accuracy_by_timestep"]))
        table.add_row("accuracy, step t alone (test)", _curve(m["accuracy_at_timestep"]))
    if m.get("exit"):
        _exit_rows(table, m["exit"])
    table.add_row("mean firing rate", "—" if m["firing_rate"] is None else f"{m['firing_rate']:.4f}")
    params = f"{m['student_parameters']:,}"
    if m.get("teacher_parameters"):
        params += f" / {m['teacher_parameters']:,}"
    table.add_row("parameters (student / teacher)", params)
    table.add_row("epochs (best on validation)", f"{m['epochs']} ({m['best_epoch']})")
    table.add_row("wall time", f"{m['wall_time_s']:.1f} s")
    if m.get("threads"):
        table.add_row("torch threads", f"{m['threads']} ({m['threads_reason']})")
    if m.get("rate") or m.get("energy"):
        _energy_rows(table, m.get("rate"), m.get("energy"))
    table.add_row("checkpoint", str(result.checkpoint))
    Console().print(table)


def _energy_rows(table: Table, rate: dict | None, energy: dict | None) -> None:
    """The rate term's targets and the result against break-even (docs/energy-aware.md)."""
    if rate:
        aims = ", ".join(f"{name} {rate['margin'] * r:.3g}"
                         for name, r in rate["targets"].items())
        table.add_row(f"rate term (target {rate['target']}, w={rate['weight']:g})",
                      aims or "no layer has a target")
        for name, why in rate["untargeted"].items():
            table.add_row(f"  no rate target: {name}", why)
    if energy:
        table.add_row(f"below break-even ({energy['profile']}/{energy['energy_model']}, "
                      f"ANN {energy['ann']})",
                      ", ".join(f"{n} {row['rate']:.3f}<{row['break_even']:.3f}" for n, row
                                in energy["layers"].items() if row["below"]) or "none")
        above = [f"{n} {row['rate']:.3f}>={row['break_even']:.3f}"
                 for n, row in energy["layers"].items() if row["below"] is False]
        if above:
            table.add_row("above break-even", ", ".join(above))
        ratio = energy.get("ratio")
        table.add_row("energy SNN / ANN", "—" if ratio is None else
                      f"{ratio:.3f} ({energy['snn_energy_pj']:.4g} / "
                      f"{energy['ann_energy_pj']:.4g} pJ per inference)")


def _curve(values) -> str:
    """Accuracies per timestep as one cell: ``45.0 / 78.3 / 93.9 %``."""
    return " / ".join(pct(v, 1, sign=False) for v in values or []) + " %"


def _exit_rows(table: Table, record: dict) -> None:
    """The early exit of a run (metrics.json's ``exit``, docs/anytime.md)."""
    from ..anytime import get_rule

    rule = get_rule(record["rule"])
    how = (f"calibrated on validation, drop <= {record['drop_points']:g} points"
           if record["calibrated_on"] == "validation" else "threshold given")
    table.add_row("exit rule", f"{rule.name} {rule.comparison} {record['threshold']:.4g} ({how})")
    table.add_row("exit accuracy (test / validation)",
                  f"{pct(record['test_accuracy'])} / {pct(record['validation_accuracy'])}")
    table.add_row("mean timesteps, exit (test)",
                  f"{record['mean_timesteps']:.2f} of {record['timesteps']} "
                  f"(oracle {record['oracle_mean_timesteps']:.2f})")
    table.add_row("exits at t=1..T (test)", " / ".join(str(n) for n in record["exit_histogram"]))


def _plain() -> Console:
    # File names and shapes hold brackets: no rich markup, no wrapping of long lines.
    return Console(markup=False, highlight=False, soft_wrap=True)


def print_lines(lines: list[str]) -> None:
    """Plain lines (an export's ``summary_lines()``), printed as they are."""
    console = _plain()
    for line in lines:
        console.print(line)


def print_simulation(result) -> None:
    """Accuracies of the backend, the float and the integer model, and their agreement."""
    console = _plain()
    console.print(f"{result.backend} on {result.dataset} test split ({result.samples} samples, "
                  f"T={result.timesteps}): {result.seconds_per_sample * 1000:.1f} ms per sample")
    if result.agreement is None:  # onnx: the file is the float network
        console.print(f"  accuracy: {pct(result.accuracy)}")
    else:
        console.print(f"  accuracy: {result.backend} {pct(result.accuracy)}, float "
                      f"(PyTorch) {pct(result.torch_accuracy)}, integer model "
                      f"{pct(result.quantized_accuracy)}")
        console.print(f"  {result.backend} vs bit-accurate integer model: argmax "
                      f"{pct(result.agreement)}")
    if getattr(result, "accuracy_by_timestep", None):
        console.print("  accuracy by timestep (steps 1..t): " + ", ".join(
            f"t={t} {pct(a)}" for t, a in enumerate(result.accuracy_by_timestep, 1)))
    if getattr(result, "exit", None):
        e = result.exit
        whose = "the export's exit" if e.get("origin") == "run" else "exit"
        console.print(f"  {whose} ({e['rule']}, threshold {e['threshold']:.4g}): accuracy "
                      f"{pct(e['accuracy'])}, mean {e['mean_timesteps']:.2f} of "
                      f"T={result.timesteps} timesteps")
    for name, count in result.spike_counts.items():
        share = result.identical_spikes.get(name)
        same = "" if share is None else f"{pct(share)} identical spikes, "
        console.print(f"  {name}: {same}{count:,} spikes")
