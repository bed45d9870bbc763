"""Rich tables the CLI prints (kept apart so the library itself prints nothing)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}%"


def print_distill_summary(result) -> None:
    m = result.metrics
    table = Table(title=f"neurokd distill · {result.config.run_name}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("teacher accuracy (test)", _pct(m["teacher_accuracy"]))
    table.add_row(f"student accuracy (test, {m['method']}, T={m['timesteps']})",
                  _pct(m["student_accuracy"]))
    table.add_row("mean firing rate", "—" if m["firing_rate"] is None else f"{m['firing_rate']:.4f}")
    params = f"{m['student_parameters']:,}"
    if m.get("teacher_parameters"):
        params += f" / {m['teacher_parameters']:,}"
    table.add_row("parameters (student / teacher)", params)
    table.add_row("epochs (best on validation)", f"{m['epochs']} ({m['best_epoch']})")
    table.add_row("wall time", f"{m['wall_time_s']:.1f} s")
    table.add_row("checkpoint", str(result.checkpoint))
    Console().print(table)
