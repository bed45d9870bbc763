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
    table.add_row("mean firing rate", "—" if m["firing_rate"] is None else f"{m['firing_rate']:.4f}")
    params = f"{m['student_parameters']:,}"
    if m.get("teacher_parameters"):
        params += f" / {m['teacher_parameters']:,}"
    table.add_row("parameters (student / teacher)", params)
    table.add_row("epochs (best on validation)", f"{m['epochs']} ({m['best_epoch']})")
    table.add_row("wall time", f"{m['wall_time_s']:.1f} s")
    if m.get("threads"):
        table.add_row("torch threads", f"{m['threads']} ({m['threads_reason']})")
    table.add_row("checkpoint", str(result.checkpoint))
    Console().print(table)


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
    for name, count in result.spike_counts.items():
        share = result.identical_spikes.get(name)
        same = "" if share is None else f"{pct(share)} identical spikes, "
        console.print(f"  {name}: {same}{count:,} spikes")
