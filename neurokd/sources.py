"""Where a student comes from: a neurokd checkpoint, or a user's own spikingjelly model.

``export`` and ``energy report`` share this loader, so both accept
``--model pkg.module:build_fn [--weights W.pt] --input-shape C,H,W --timesteps T``; their Python
APIs share :func:`as_source` (a checkpoint path, a source or a bare module).
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from .checkpoint import read_torch_file
from .encoding import DirectEncoding
from .errors import ConfigError, NeuroKDError


@dataclass
class StudentSource:
    """A spiking model taking ``[B, ...]`` (direct encoding) or ``[T, B, ...]``, giving ``[T, B, K]``."""

    model: nn.Module
    input_shape: tuple[int, ...]
    timesteps: int
    label: str
    config: dict[str, Any] | None = None  # the run config, for neurokd checkpoints
    teacher: nn.Module | None = None
    class_names: list[str] | None = None


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--input-shape must look like 1,8,8, not {text!r}") from None
    if not shape or any(d < 1 for d in shape):
        raise ConfigError(f"--input-shape must be positive sizes like 1,8,8, not {text!r}")
    return shape


def load_source(checkpoint: str | Path | None = None, model: str | None = None,
                weights: str | Path | None = None, input_shape: str | tuple | None = None,
                timesteps: int | None = None) -> StudentSource:
    """Exactly one of ``checkpoint`` or ``model`` ("pkg.module:build_fn")."""
    if (checkpoint is None) == (model is None):
        raise ConfigError("give either a checkpoint or --model pkg.module:build_fn")
    if checkpoint is not None:
        from .loading import load

        run = load(checkpoint)
        return StudentSource(run.student, tuple(run.config["input_shape"]),
                             int(run.config["timesteps"]), Path(checkpoint).stem, run.config,
                             run.teacher, run.class_names)
    if input_shape is None or timesteps is None:
        raise ConfigError("--model needs --input-shape C,H,W and --timesteps T")
    shape = parse_shape(input_shape) if isinstance(input_shape, str) else tuple(input_shape)
    if timesteps < 1:
        raise ConfigError(f"--timesteps must be >= 1, not {timesteps}")
    user_model = _build_user_model(model)
    if weights is not None:
        state = read_torch_file(weights)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise NeuroKDError(f"{weights}: expected a state_dict (a dict of tensors)")
        try:
            user_model.load_state_dict(state)
        except RuntimeError as exc:
            raise NeuroKDError(f"{weights}: weights do not fit {model}: "
                               f"{str(exc).splitlines()[0]}") from None
    from spikingjelly.activation_based import functional

    functional.set_step_mode(user_model, "m")
    return StudentSource(DirectEncoding(user_model, shape, timesteps).eval(), shape, timesteps,
                         model.rsplit(":", 1)[-1])


def as_source(source: StudentSource | nn.Module | str | Path,
              input_shape: tuple[int, ...] | None = None, timesteps: int | None = None,
              purpose: str = "export") -> StudentSource:
    """A StudentSource from a source, a checkpoint path, or a module plus its shape and T.

    ``purpose`` names the caller in messages; ``"export"`` needs a bare module's input shape
    and T, counting (``"count"``) does not: it takes both from the inputs it runs on."""
    if isinstance(source, StudentSource):
        return source
    if isinstance(source, str | Path):
        return load_source(checkpoint=source)
    if not isinstance(source, nn.Module):
        raise NeuroKDError(f"cannot {purpose} a {type(source).__name__}: give a checkpoint path, "
                           "a StudentSource or a torch module")
    input_shape = input_shape or getattr(source, "input_shape", None)
    timesteps = timesteps or getattr(source, "timesteps", None)
    if purpose == "export" and (not input_shape or not timesteps):
        raise NeuroKDError("exporting a bare module needs input_shape=(C,H,W) and timesteps=T")
    return StudentSource(source, tuple(input_shape or ()), int(timesteps or 0),
                         type(source).__name__)


def _build_user_model(spec: str) -> nn.Module:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"--model must look like pkg.module:build_fn, not {spec!r}")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: the user's own modules in the working folder
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"--model: cannot import {module_name!r}: {exc}") from None
    builder = getattr(module, attr, None)
    if builder is None:
        raise ConfigError(f"--model: {module_name!r} has no attribute {attr!r}")
    try:
        built = builder() if callable(builder) and not isinstance(builder, nn.Module) else builder
    except Exception as exc:  # noqa: BLE001 - the user's code: report it, don't crash
        raise ConfigError(f"--model: {spec}() failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(built, nn.Module):
        raise ConfigError(f"--model: {spec} returned {type(built).__name__}, not a torch nn.Module")
    return built.eval()
