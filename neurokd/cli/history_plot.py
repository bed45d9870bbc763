"""``neurokd plot RUN``: a run's training history (metrics.json) as one PNG.

Four panels over epochs: the loss and each of its terms (student solid, teacher dashed),
train and validation accuracy, the firing rate overall and per layer (docs/formats.md, "Layer
names"), the learning rate (with the epoch time on a second axis); two over timesteps
(docs/anytime.md): the accuracy from the first t timesteps (test, and validation for every
epoch, the kept one bold) and of step t alone, and where an exit rule stopped the test samples.
metrics.json is read as untrusted input: a file that is not a neurokd history is one error
naming the file and the field.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from ..anytime import checked_exit_record, get_rule
from ..errors import NeuroKDError
from ..files.json_text import loads_bounded
from ..files.paths import open_regular
from ..text import pct
from .figure import plot_text, pyplot, write_png

MAX_METRICS_BYTES = 64 * 1024 * 1024   # a 300-epoch history with every term is ~1 MB
MAX_NAMES = 1000  # loss terms or layers of one epoch record (a ResNet-19 has ~40 layers)


def read_history(run: str | Path) -> tuple[Path, dict[str, Any]]:
    """metrics.json of a run folder (or the file itself), checked field by field."""
    path = Path(run)
    path = path / "metrics.json" if path.is_dir() else path
    # a FIFO, a device or a folder is refused by name, never waited on
    with open_regular(path, "metrics file", error=NeuroKDError,
                      missing=f"no metrics.json at {path}: give a run folder written by "
                              "neurokd distill") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > MAX_METRICS_BYTES:
            raise NeuroKDError(f"{path}: {size:,} bytes is not a run history")
        try:
            raw = handle.read(MAX_METRICS_BYTES + 1)
        except OSError as exc:
            raise NeuroKDError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_METRICS_BYTES:  # grown since the check
        raise NeuroKDError(f"{path}: over {MAX_METRICS_BYTES:,} bytes is not a run history")
    metrics = loads_bounded(raw, str(path))
    if not isinstance(metrics, dict) or not isinstance(metrics.get("history"), list):
        raise NeuroKDError(f"{path}: no 'history' list: not a neurokd metrics.json")
    for key in ("history", "teacher_history"):
        for i, record in enumerate(metrics.get(key) or []):
            _check_record(path, key, i, record)
    if not metrics["history"]:
        raise NeuroKDError(f"{path}: the history holds no epochs")
    for key in ("accuracy_by_timestep", "accuracy_at_timestep"):
        _check_curve(f"{path}: {key}", metrics.get(key))
    metrics["exit"] = checked_exit_record(metrics.get("exit"), str(path))
    return path, metrics


def _check_curve(where: str, values: Any) -> None:
    """An accuracy per timestep: absent, or a list of finite numbers."""
    if values is not None and (not isinstance(values, list) or len(values) > 100_000
                               or not all(_number(v) for v in values)):
        raise NeuroKDError(f"{where} must list finite accuracies, one per timestep")


def _check_record(path: Path, key: str, index: int, record: Any) -> None:
    where = f"{path}: {key}[{index}]"
    if not isinstance(record, dict):
        raise NeuroKDError(f"{where} is a {type(record).__name__}, not an epoch record")
    for field in ("epoch", "loss", "val_accuracy"):
        if not _number(record.get(field)):
            raise NeuroKDError(f"{where}.{field} must be a finite number, not "
                               f"{record.get(field)!r}")
    for group in ("terms", "layer_firing_rates"):
        values = record.get(group) or {}
        if not isinstance(values, dict) or len(values) > MAX_NAMES or \
                not all(_number(v) for v in values.values()):
            raise NeuroKDError(f"{where}.{group} must map names to finite numbers (at most "
                               f"{MAX_NAMES} names)")
    _check_curve(f"{where}.val_accuracy_by_timestep", record.get("val_accuracy_by_timestep"))


MAX_VALUE = 1e15  # no loss, rate, accuracy or epoch is larger: 1e308 overflows the axes


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and \
        math.isfinite(value) and abs(value) <= MAX_VALUE


def _series(history: list[dict], field: str) -> tuple[list[float], list[float]]:
    points = [(r["epoch"], r[field]) for r in history if _number(r.get(field))]
    return [p[0] for p in points], [p[1] for p in points]


def write_history_plot(run: str | Path, output: str | Path | None = None) -> Path:
    """Draw the run's history; returns the PNG's path (default: RUN/training.png)."""
    path, metrics = read_history(run)
    output = Path(output) if output else path.parent / "training.png"
    return write_png(history_figure(path.parent.name, metrics), output)


def history_figure(name: str, metrics: dict[str, Any]):
    """The six panels of a checked history (:func:`read_history`) as a matplotlib figure:
    ``figure.axes`` holds the four over epochs, the epoch-time axis, then the two over
    timesteps."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()

    student, teacher = metrics["history"], metrics.get("teacher_history") or []
    figure = plt.figure(figsize=(12, 12))
    grid = figure.add_gridspec(3, 2)
    panels = [figure.add_subplot(grid[row, column]) for row in range(2) for column in range(2)]
    _loss_panel(panels[0], student, teacher)
    _accuracy_panel(panels[1], student, teacher, metrics.get("best_epoch"))
    _rate_panel(panels[2], student)
    _lr_panel(panels[3], student)
    panels += [figure.add_subplot(grid[2, column]) for column in range(2)]
    _timestep_panel(panels[4], metrics)
    _exit_panel(panels[5], metrics.get("exit"))
    for axis in panels:
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs, timesteps: whole
        if not any(len(line.get_xdata()) for line in axis.lines) and not axis.patches \
                and not axis.texts:
            # an older metrics.json: say so instead of drawing empty axes
            if axis.get_legend():
                axis.get_legend().remove()
            axis.text(0.5, 0.5, "not recorded in this metrics.json\n(written before neurokd "
                      "logged it)", ha="center", va="center", transform=axis.transAxes)
            axis.set_xticks([])
            axis.set_yticks([])
    figure.suptitle(f"{plot_text(name)}: {plot_text(metrics.get('method', '?'))} on "
                    f"{plot_text(metrics.get('dataset', '?'))}, "
                    f"T={plot_text(metrics.get('timesteps', '?'))}; test "
                    f"accuracy student {pct(metrics.get('student_accuracy'))}, teacher "
                    f"{pct(metrics.get('teacher_accuracy'))}")
    figure.tight_layout()
    return figure




def _timestep_panel(axis, metrics: dict[str, Any]) -> None:
    """Accuracy against the timesteps run: from steps 1..t (validation per epoch, test) and
    of step t alone (test); the exit's test accuracy at its mean timesteps."""
    history, kept = metrics["history"], metrics.get("best_epoch")
    for record in history:
        curve = record.get("val_accuracy_by_timestep")
        if curve and record["epoch"] != kept:
            axis.plot(range(1, len(curve) + 1), [100 * v for v in curve], color="lightgray",
                      linewidth=0.8, label="_validation, other epochs")
    for record in history:
        curve = record.get("val_accuracy_by_timestep")
        if curve and record["epoch"] == kept:
            axis.plot(range(1, len(curve) + 1), [100 * v for v in curve], color="tab:blue",
                      linewidth=2, label=f"validation, steps 1..t (kept epoch {kept})")
    for key, style, label in (("accuracy_by_timestep", "-", "test, steps 1..t"),
                              ("accuracy_at_timestep", ":", "test, step t alone")):
        curve = metrics.get(key)
        if curve:
            axis.plot(range(1, len(curve) + 1), [100 * v for v in curve], color="black",
                      linestyle=style, marker="o", label=label)
    record = metrics.get("exit")
    if record:
        axis.plot([record["mean_timesteps"]], [100 * record["test_accuracy"]], "*",
                  color="tab:red", markersize=14,
                  label=f"test with {record['rule']} exit (mean timesteps)")
    if any(line.get_label() == "_validation, other epochs" for line in axis.lines):
        axis.plot([], [], color="lightgray", label="validation, other epochs")
    axis.set(title="accuracy by timestep", xlabel="timesteps run (t)", ylabel="accuracy (%)")
    if axis.lines:  # an older metrics.json has none: the figure says so instead
        axis.legend(fontsize="small")


def _exit_panel(axis, record: dict[str, Any] | None) -> None:
    """How many test samples the exit rule stopped at each timestep."""
    if not record:
        axis.text(0.5, 0.5, "no exit rule in this run\n(neurokd distill --exit-rule, "
                  "docs/anytime.md)", ha="center", va="center", transform=axis.transAxes)
        axis.set_xticks([])
        axis.set_yticks([])
        return
    rule = get_rule(record["rule"])
    steps = range(1, len(record["exit_histogram"]) + 1)
    axis.bar(steps, record["exit_histogram"], color="tab:red", alpha=0.7, label="test samples")
    axis.axvline(record["mean_timesteps"], color="black",
                 label=f"mean {record['mean_timesteps']:.2f}")
    axis.axvline(record["oracle_mean_timesteps"], color="black", linestyle="--",
                 label=f"oracle {record['oracle_mean_timesteps']:.2f}")
    how = "calibrated on validation" if record["calibrated_on"] == "validation" else "given"
    axis.set(title=f"exit steps: {rule.name} {rule.comparison} {record['threshold']:.4g} "
                   f"({how})\ntest accuracy {pct(record['test_accuracy'])}",
             xlabel="exit timestep", ylabel="test samples")
    axis.legend(fontsize="small")


def _loss_panel(axis, student: list[dict], teacher: list[dict]) -> None:
    axis.plot(*_series(student, "loss"), color="black", label="student loss")
    names = [n for r in student for n in (r.get("terms") or {})]
    for name in dict.fromkeys(names):
        epochs = [r["epoch"] for r in student if name in (r.get("terms") or {})]
        values = [r["terms"][name] for r in student if name in (r.get("terms") or {})]
        axis.plot(epochs, values, label=f"term {plot_text(name)}")
    if teacher:
        axis.plot(*_series(teacher, "loss"), color="gray", linestyle="--", label="teacher loss")
    axis.axhline(0.0, color="lightgray", linewidth=0.8)
    axis.set(title="training loss and its terms (per epoch mean)", xlabel="epoch",
             ylabel="loss")
    axis.legend(fontsize="small")


def _accuracy_panel(axis, student: list[dict], teacher: list[dict],
                    kept: int | None = None) -> None:
    """Train and validation accuracy. The axis follows where the run settles (a 10-100% axis
    flattened the 95-100 band where students differ): its floor is the lowest value after the
    first fifth of the epochs, less 2 points; the epochs below it are said in the title. The
    kept (best-validation) epoch is marked."""
    plotted = []
    for history, who, style in ((student, "student", "-"), (teacher, "teacher", "--")):
        for field in ("train_accuracy", "val_accuracy"):
            epochs, values = _series(history, field)
            if values:
                axis.plot(epochs, [100 * v for v in values], linestyle=style,
                          label=f"{who} {field.split('_')[0]}")
                settled = len(epochs) // 5
                plotted += [(e, 100 * v, e > epochs[settled - 1] if settled else True)
                            for e, v in zip(epochs, values, strict=True)]
    title = "accuracy"
    late = [v for _, v, is_late in plotted if is_late]
    if late:
        floor = max(0.0, min(late) - 2.0)
        axis.set_ylim(floor, 100.5)
        below = sorted({e for e, v, _ in plotted if v < floor})
        if below:
            title += f" (epoch{'s' * (len(below) > 1)} {_span(below)} below the axis)"
    if kept is not None:
        val = dict(zip(*_series(student, "val_accuracy"), strict=True)).get(kept)
        axis.axvline(kept, color="tab:green", linestyle=":", linewidth=1.5,
                     label=f"kept: epoch {kept}" + ("" if val is None else
                                                   f" (validation {100 * val:.2f}%)"))
    axis.set(title=title, xlabel="epoch", ylabel="accuracy (%)")
    axis.legend(fontsize="small")


def _span(epochs: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
    runs, start, previous = [], epochs[0], epochs[0]
    for epoch in [*epochs[1:], None]:
        if epoch is not None and epoch == previous + 1:
            previous = epoch
            continue
        runs.append(str(start) if start == previous else f"{start}-{previous}")
        if epoch is not None:
            start = previous = epoch
    return ", ".join(runs)


def _rate_panel(axis, student: list[dict]) -> None:
    axis.plot(*_series(student, "firing_rate"), color="black", linewidth=2, label="all layers")
    layers = [n for r in student for n in (r.get("layer_firing_rates") or {})]
    for name in dict.fromkeys(layers):
        points = [(r["epoch"], r["layer_firing_rates"][name]) for r in student
                  if name in (r.get("layer_firing_rates") or {})]
        axis.plot([p[0] for p in points], [p[1] for p in points], label=plot_text(name))
    axis.set(title="student firing rate on the validation split", xlabel="epoch",
             ylabel="spikes per neuron and timestep")
    axis.legend(fontsize="small")


def _lr_panel(axis, student: list[dict]) -> None:
    axis.plot(*_series(student, "lr"), color="tab:blue", label="learning rate")
    axis.set(title="learning rate and epoch time", xlabel="epoch", ylabel="learning rate")
    seconds = _series(student, "epoch_seconds")
    if seconds[1]:
        twin = axis.twinx()
        twin.plot(*seconds, color="tab:orange", label="epoch time")
        twin.set_ylabel("seconds per epoch")
        twin.legend(loc="upper right", fontsize="small")
    axis.legend(loc="upper left", fontsize="small")
