"""Where a student comes from: a neurokd checkpoint, a NIR file, or a user's own model.

``export`` and ``energy report`` share this loader, so both accept a checkpoint, a ``.nir``
file (written by neurokd, snnTorch, Norse, spikingjelly...: ``nir_import.py``; T and the input
shape from its metadata or ``--timesteps`` / ``--input-shape``) and
``--model pkg.module:build_fn [--weights W.pt] --input-shape C,H,W --timesteps T``; their Python
APIs share :func:`as_source` (a checkpoint or NIR path, a source or a bare module).
"""

from __future__ import annotations

import importlib
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..anytime import checked_exit_record
from ..data.encoding import DirectEncoding
from ..errors import ConfigError, NeuroKDError
from ..files.budget import check_bytes
from ..files.torch_file import read_torch_file
from ..text import first_line
from ..validation import SIZE_LIMITS, check_shape


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
    exit: dict[str, Any] | None = None  # the run's early exit (metrics.json's, checked)

    @property
    def description(self) -> str:
        """What the model is, for titles: a checkpoint's architecture and method."""
        config = self.config or {}
        if "student" not in config:
            return self.label  # a --model build function or a NIR file's stem
        width = f" width {config['width']}" if "width" in config else ""
        encoding = f", {config['encoding']} encoding" if config.get("encoding") else ""
        return (f"{self.label} ({config['student']}{width}, {config.get('method', '?')}"
                f"{encoding})")


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--input-shape must look like 1,8,8, not {text!r}") from None
    if not shape or any(d < 1 for d in shape):
        raise ConfigError(f"--input-shape must be positive sizes like 1,8,8, not {text!r}")
    return check_shape("--input-shape", shape)  # bounded: samples of it are allocated


def load_source(checkpoint: str | Path | None = None, model: str | None = None,
                weights: str | Path | None = None, input_shape: str | tuple | None = None,
                timesteps: int | None = None, nir_convention: str = "nir",
                nir_dt: float | None = None,
                random_weights: bool | None = None) -> StudentSource:
    """Exactly one of ``checkpoint`` (a ``.pt`` checkpoint or a ``.nir`` file) or ``model``
    ("pkg.module:build_fn").

    ``random_weights``: ``False`` refuses a ``model`` without ``weights`` (``export`` and
    ``energy report``: a file or an estimate of random initial weights is almost never what
    was meant), ``True`` asks for exactly that; ``None`` (the Python API) takes the model as
    its builder returns it."""
    if (checkpoint is None) == (model is None):
        raise ConfigError("give either a checkpoint or --model pkg.module:build_fn")
    _check_weights_choice(model, weights, random_weights)
    if checkpoint is not None and Path(checkpoint).suffix.lower() == ".nir":
        if weights is not None:
            raise ConfigError("--weights is for --model; a NIR file holds its weights")
        return nir_source(checkpoint, input_shape, timesteps, nir_convention, nir_dt)
    if checkpoint is not None:
        from .loading import load

        run = load(checkpoint)
        return StudentSource(run.student, tuple(run.config["input_shape"]),
                             int(run.config["timesteps"]), Path(checkpoint).stem, run.config,
                             run.teacher, run.class_names,
                             checked_exit_record(run.metrics.get("exit"), str(checkpoint)))
    if input_shape is None or timesteps is None:
        raise ConfigError("--model needs --input-shape C,H,W and --timesteps T")
    shape = parse_shape(input_shape) if isinstance(input_shape, str) else tuple(input_shape)
    check_timesteps(timesteps, shape)
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
                               f"{first_line(exc)}") from None
    from spikingjelly.activation_based import functional

    functional.set_step_mode(user_model, "m")
    encoded = DirectEncoding(user_model, shape, timesteps).eval()
    _check_input_shape(encoded, user_model, model, shape)
    return StudentSource(encoded, shape, timesteps, model.rsplit(":", 1)[-1])


def check_timesteps(timesteps: int, shape: tuple[int, ...]) -> None:
    """``--timesteps`` bounded as a run's are, and one sample's input over them within the
    memory budget, before the model sees any (1e9 steps of 1x8x8 would ask for 256 GB)."""
    if not isinstance(timesteps, int) or not 1 <= timesteps <= SIZE_LIMITS["timesteps"]:
        raise ConfigError(f"--timesteps must be in 1..{SIZE_LIMITS['timesteps']}, not "
                          f"{timesteps}")
    check_bytes(timesteps * math.prod(shape) * 4, f"--timesteps {timesteps} x --input-shape "
                f"{','.join(map(str, shape))}: one sample's input")


def _check_weights_choice(model: str | None, weights, random_weights: bool | None) -> None:
    if random_weights and model is None:
        raise ConfigError("--random-weights is for --model; a checkpoint or NIR file holds its "
                          "weights")
    if random_weights and weights is not None:
        raise ConfigError("give --weights W.pt or --random-weights, not both")
    if model is not None and weights is None and random_weights is False:
        raise ConfigError(f"--model {model} without --weights would use the random initial "
                          "weights its builder makes: give --weights W.pt (a state_dict), or "
                          "--random-weights if that is what you want")


def _check_input_shape(encoded: nn.Module, user_model: nn.Module, spec: str,
                       shape: tuple[int, ...]) -> None:
    """One zero sample through the model, so a wrong --input-shape is reported as that and not
    as whatever the exporters' tracing trips over later."""
    import torch
    from spikingjelly.activation_based import functional

    try:
        with torch.no_grad():
            encoded(torch.zeros(1, *shape))
    except Exception as exc:  # noqa: BLE001 - the user's model: report it, don't crash
        torch_line = first_line(exc)
        shape_text = ",".join(map(str, shape))
        why = _first_layer_mismatch(user_model, shape) or "a sample of that shape fails in it"
        raise ConfigError(f"--input-shape {shape_text} does not fit {spec}: {why} "
                          f"({torch_line})") from None
    finally:
        functional.reset_net(encoded)


def _first_layer_mismatch(model: nn.Module, shape: tuple[int, ...]) -> str | None:
    """What the model's first conv / linear layer takes, when ``shape`` is not it."""
    first = next(((name, m) for name, m in model.named_modules()
                  if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear)), None)
    if first is None:
        return None
    name, layer = first
    if isinstance(layer, nn.Linear):
        if shape[-1] == layer.in_features:
            return None
        return (f"its first layer {name!r} (Linear) takes {layer.in_features} input features, "
                f"the shape's last size is {shape[-1]}")
    dims = layer.weight.dim() - 1  # channels + the spatial sizes
    if len(shape) == dims and shape[0] == layer.in_channels:
        return None
    layout = {2: "C,L", 3: "C,H,W", 4: "C,D,H,W"}[dims]
    return (f"its first layer {name!r} ({type(layer).__name__}) takes {layout} with C = "
            f"{layer.in_channels} input channels")


def nir_source(path: str | Path, input_shape: str | tuple | None = None,
               timesteps: int | None = None, convention: str = "nir",
               dt: float | None = None) -> StudentSource:
    """A NIR file as a student; a neurokd NIR export names the data set it was made for."""
    from .nir.reader import read_nir

    shape = parse_shape(input_shape) if isinstance(input_shape, str) else input_shape
    if timesteps is not None:
        check_timesteps(timesteps, tuple(shape or (1,)))
    network = read_nir(Path(path), timesteps, shape, convention, dt)
    dataset = network.metadata.get("dataset")
    return StudentSource(network.model, network.input_shape, network.timesteps, Path(path).stem,
                         {"dataset": str(dataset)} if dataset else None)


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
