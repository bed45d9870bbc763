"""``--log-dir``: every training epoch as TensorBoard scalars and as a CSV, the quantities of the
``metrics.json`` history (loss and its terms, train / validation accuracy, firing rate overall
and per neuron layer, learning rate, epoch time).

TensorBoard, because that is the field's habit (spikingjelly's examples log with
``SummaryWriter``): ``tensorboard --logdir LOG_DIR`` shows ``student/loss``,
``student/terms/kl``, ``student/accuracy/val``, ``student/firing_rate/features.2``,
``student/accuracy/val_by_timestep/t1`` (the validation accuracy from the first timestep; one
tag per t, see docs/anytime.md) and so on.
The CSV (one file per phase: ``teacher.csv``, ``student.csv``) has one row per epoch; it is
rewritten whole after every epoch under a temporary name, so it is never half written, and a
resumed run keeps the rows it had.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from ..files.safe_io import make_folder, write_text

FIXED = ("epoch", "loss", "train_accuracy", "val_accuracy", "firing_rate", "lr",
         "epoch_seconds")


def flat_record(record: dict[str, Any]) -> dict[str, Any]:
    """One history record as flat columns: ``term:NAME``, ``rate:LAYER`` and ``val_by_t:T``
    (the validation accuracy from the first T timesteps) beside the rest."""
    row = {key: record.get(key) for key in FIXED}
    row |= {f"term:{name}": value for name, value in (record.get("terms") or {}).items()}
    row |= {f"rate:{name}": value for name, value in
            (record.get("layer_firing_rates") or {}).items()}
    row |= {f"val_by_t:{t}": value for t, value in
            enumerate(record.get("val_accuracy_by_timestep") or [], start=1)}
    return row


class TrainingLog:
    """The epoch callback that writes both; ``close()`` flushes TensorBoard."""

    def __init__(self, folder: str | Path, resume: bool = False) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.folder = make_folder(folder)
        self.rows: dict[str, list[dict[str, Any]]] = {}
        if resume:
            for phase in ("teacher", "student"):
                path = self.folder / f"{phase}.csv"
                if path.is_file():
                    with open(path, newline="", encoding="utf-8") as handle:
                        self.rows[phase] = list(csv.DictReader(handle))
        self.writer = SummaryWriter(log_dir=str(self.folder))

    def __call__(self, phase: str, record: dict[str, Any]) -> None:
        row = flat_record(record)
        rows = self.rows.setdefault(phase, [])
        rows[:] = [r for r in rows if str(r.get("epoch")) != str(row["epoch"])] + [row]
        write_text(self.folder / f"{phase}.csv", _csv(rows))
        for column, value in row.items():
            if column != "epoch" and isinstance(value, int | float):
                self.writer.add_scalar(f"{phase}/{_tag(column)}", value, int(row["epoch"]))
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _tag(column: str) -> str:
    if column.startswith("term:"):
        return "terms/" + column[5:]
    if column.startswith("rate:"):
        return "firing_rate/" + column[5:]
    if column.startswith("val_by_t:"):
        return "accuracy/val_by_timestep/t" + column[len("val_by_t:"):]
    if column.endswith("_accuracy"):
        return "accuracy/" + column[: -len("_accuracy")]
    return column


def _csv(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
