"""``neurokd.load(path)``: rebuild the student and teacher of a run from its checkpoint alone."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from .checkpoint import load_checkpoint
from .errors import CheckpointError
from .models import build_student, build_teacher


@dataclass
class LoadedRun:
    student: nn.Module
    teacher: nn.Module | None
    config: dict[str, Any]
    metrics: dict[str, Any]
    class_names: list[str]


def load(path: str | Path) -> LoadedRun:
    """Student and teacher in eval mode, with the run's config and metrics."""
    stored = load_checkpoint(path)
    config = stored["config"]
    try:
        student = build_student(config)
        student.load_state_dict(stored["student"])
        teacher = None
        if stored.get("teacher") is not None:
            teacher = build_teacher(config)
            teacher.load_state_dict(stored["teacher"])
    except (KeyError, TypeError, RuntimeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: cannot rebuild the model from its config: {detail}") from None
    return LoadedRun(student.eval(), teacher.eval() if teacher else None, config,
                     stored["metrics"], list(stored.get("class_names") or []))
