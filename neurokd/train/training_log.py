"""``--log-dir``: every training epoch as TensorBoard scalars and as a CSV, the quantities of the
``metrics.json`` history (loss and its terms, train / validation accuracy, firing rate overall
and per neuron layer, learning rate, epoch time).

TensorBoard, because that is the field's habit (spikingjelly's examples log with
``SummaryWriter``): ``tensorboard --logdir LOG_DIR`` shows ``student/loss``,
``student/terms/kl``, ``student/accuracy/val``, ``student/firing_rate/features.0``,
``student/accuracy/val_by_timestep/t1`` (the validation accuracy from the first timestep; one
tag per t, see docs/anytime.md) and so on.
The CSV (one file per phase: ``teacher.csv``, ``student.csv``) has one row per epoch; it is
rewritten whole after every epoch under a temporary name, so it is never half written, and a
resumed run keeps the rows it had.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from ..errors import DataError, WriteError
from ..files.paths import open_regular
from ..files.safe_io import make_folder, write_text

FIXED = ("epoch", "loss", "train_accuracy", "val_accuracy", "firing_rate", "lr",
         "epoch_seconds")


def flat_record(record: dict[str, Any]) -> dict[str, Any]:
    """One history record as flat columns: ``term:NAME``, ``rate:LAYER``, ``input_rate:LAYER``
    and ``rate_target:LAYER`` (the rate term's m · r*), and ``val_by_t:T``
    (the validation accuracy from the first T timesteps) beside the rest."""
    row = {key: record.get(key) for key in FIXED}
    row |= {f"term:{name}": value for name, value in (record.get("terms") or {}).items()}
    row |= {f"rate:{name}": value for name, value in
            (record.get("layer_firing_rates") or {}).items()}
    row |= {f"input_rate:{name}": value for name, value in
            (record.get("input_rates") or {}).items()}
    row |= {f"rate_target:{name}": value for name, value in
            (record.get("rate_targets") or {}).items()}
    row |= {f"val_by_t:{t}": value for t, value in
            enumerate(record.get("val_accuracy_by_timestep") or [], start=1)}
    return row


class TrainingLog:
    """The epoch callback that writes both; ``close()`` flushes TensorBoard."""

    def __init__(self, folder: str | Path, resume: bool = False) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.folder = make_folder(folder)
        if not os.access(self.folder, os.W_OK | os.X_OK):  # before TensorBoard's own error
            raise WriteError(f"cannot write the training log in {self.folder}: no permission "
                             "to write there")
        self.rows: dict[str, list[dict[str, Any]]] = {}
        if resume:
            for phase in ("teacher", "student"):
                path = self.folder / f"{phase}.csv"
                if os.path.lexists(path):
                    self.rows[phase] = _read_csv(path)
        try:
            self.writer = SummaryWriter(log_dir=str(self.folder))
        except OSError as exc:
            raise WriteError(f"cannot write the training log in {self.folder}: "
                             f"{exc.strerror or exc}") from None

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


MAX_CSV_BYTES = 64 * 1024 * 1024  # a 300-epoch log with every column is well under 1 MB


def _read_csv(path: Path) -> list[dict[str, Any]]:
    """The rows of a log CSV being resumed: a regular file of bounded size, UTF-8, one value
    per column; anything else is named, never half-read."""
    with open_regular(path, "training log") as handle:
        data = handle.read(MAX_CSV_BYTES + 1)
    if len(data) > MAX_CSV_BYTES:
        raise DataError(f"training log {path} is over {MAX_CSV_BYTES:,} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"training log {path} is not UTF-8 text ({exc.reason} at byte "
                        f"{exc.start})") from None
    try:
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise DataError(f"training log {path} is not a CSV file ({exc})") from None
    for number, row in enumerate(rows, 2):
        if None in row or not str(row.get("epoch") or "").isdigit() or \
                not all(v == "" or _number(v) for v in row.values()):
            raise DataError(f"training log {path}, line {number}: not a row of this log (a "
                            "whole-number epoch and one number or nothing per column)")
    return rows


def _number(text: Any) -> bool:
    """A number as the log writes one (``nan`` included), at most 64 characters."""
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return len(text) <= 64


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
