"""One self-describing checkpoint file; loaded with ``weights_only=True`` only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..files.safe_io import write_atomic
from ..files.torch_file import read_torch_file

FORMAT = "neurokd.checkpoint"
TEACHER_FORMAT = "neurokd.teacher"
VERSION = 1


def save_checkpoint(path: str | Path, config: dict[str, Any], student: dict, teacher: dict | None,
                    metrics: dict[str, Any], class_names: list[str]) -> Path:
    payload = {"format": FORMAT, "version": VERSION, "config": config, "student": student,
               "teacher": teacher, "metrics": metrics, "class_names": list(class_names)}
    return write_atomic(path, lambda tmp: torch.save(payload, tmp))


def save_teacher(path: str | Path, config: dict[str, Any], teacher: dict,
                 metrics: dict[str, Any], class_names: list[str]) -> Path:
    payload = {"format": TEACHER_FORMAT, "version": VERSION, "config": config, "teacher": teacher,
               "metrics": metrics, "class_names": list(class_names)}
    return write_atomic(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | Path, formats: tuple[str, ...] = (FORMAT,)) -> dict[str, Any]:
    data = read_torch_file(path)
    if not isinstance(data, dict) or data.get("format") not in formats:
        raise CheckpointError(f"{path}: not a neurokd checkpoint (expected format {formats[0]!r})")
    if data.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {data.get('version')!r} is not "
                              f"supported (this neurokd reads version {VERSION})")
    for key in ("config", "metrics") + (("student",) if data["format"] == FORMAT else ("teacher",)):
        if not isinstance(data.get(key), dict):
            raise CheckpointError(f"{path}: checkpoint lacks its {key!r} section")
    return data
