"""``neurokd.load(path)``: rebuild the student and teacher of a run from its checkpoint alone.

Everything in the file is input: the stored config passes RunConfig's validation (types,
ranges, choices, sizes), the models it describes are sized on torch's meta device before any
real allocation, the class names are checked against the number of classes, and each state
dict must match the rebuilt model key by key, shape by shape and dtype by dtype, with finite
values, before it is loaded. Each failure names the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError, NeuroKDError
from ..files.budget import check_bytes
from ..models import build_student, build_teacher
from .checkpoint import load_checkpoint


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
    config = checked_config(stored["config"], path)
    class_names = _class_names(stored.get("class_names"), config["num_classes"], path)
    student = checked_model(build_student, config, stored["student"], f"{path}: student")
    teacher = None
    if stored.get("teacher") is not None:
        teacher = checked_model(build_teacher, config, stored["teacher"], f"{path}: teacher")
    return LoadedRun(student.eval(), teacher.eval() if teacher else None, config,
                     stored["metrics"], class_names)


def checked_config(values: Any, path: str | Path) -> dict[str, Any]:
    """A checkpoint's config, validated as the command line would validate it."""
    from ..config import RunConfig

    if not isinstance(values, dict):
        raise CheckpointError(f"{path}: config is a {type(values).__name__}, not a table")
    for key in ("input_shape", "num_classes"):
        if values.get(key) is None:
            raise CheckpointError(f"{path}: config lacks {key}: was it written by neurokd?")
    try:
        return RunConfig.from_dict(values, source=f"{path}: config").to_dict()
    except ConfigError as exc:
        message = str(exc)
        prefix = f"{path}: config"
        raise CheckpointError(message if message.startswith(prefix) else
                              f"{prefix}: {message}") from None


def _class_names(names: Any, classes: int, path: str | Path) -> list[str]:
    if names is None or names == []:
        return []
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"{path}: class_names must be a list of strings, not "
                              f"{type(names).__name__}")
    if len(names) != classes:
        raise CheckpointError(f"{path}: {len(names)} class_names for {classes} classes")
    return list(names)


def checked_model(build, config: dict[str, Any], state: Any, where: str) -> nn.Module:
    """``build(config)`` loaded with ``state`` once the state is known to fit it."""
    with torch.device("meta"):  # shapes only: nothing allocated until the size is known
        try:
            skeleton = build(config)
        except NeuroKDError:
            raise
        except Exception as exc:  # noqa: BLE001 - a config torch cannot build is bad input
            raise CheckpointError(f"{where}: cannot build the model its config describes "
                                  f"({type(exc).__name__}: {exc})") from None
    expected = skeleton.state_dict()
    check_bytes(sum(t.numel() * t.element_size() for t in expected.values()),
                f"{where}: the model its config describes")
    _check_state(state, expected, where)
    model = build(config)
    model.load_state_dict(state)
    return model


def _check_state(state: Any, expected: dict[str, torch.Tensor], where: str) -> None:
    if not isinstance(state, dict):
        raise CheckpointError(f"{where} weights are a {type(state).__name__}, not a state dict")
    missing = [key for key in expected if key not in state]
    extra = [key for key in state if key not in expected]
    if missing or extra:
        first = missing[0] if missing else extra[0]
        what = "lacks" if missing else "has an unexpected"
        raise CheckpointError(f"{where} weights {what} {first!r} ({len(missing)} missing, "
                              f"{len(extra)} unexpected): they do not fit the config")
    for key, reference in expected.items():
        value = state[key]
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{where} weight {key!r} is a {type(value).__name__}")
        if value.shape != reference.shape or value.dtype != reference.dtype:
            raise CheckpointError(f"{where} weight {key!r} is {value.dtype} "
                                  f"{tuple(value.shape)}, the model needs {reference.dtype} "
                                  f"{tuple(reference.shape)}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{where} weight {key!r} holds NaN or infinite values")
