"""How a static sample becomes T timesteps, and the wrapper that does it for a user's model.

A student takes ``[B, ...]`` static input (encoded inside the model) or ``[T, B, ...]`` input
that already has a time axis (event frames). Direct encoding repeats the static sample at
every timestep: :func:`repeat_over_time` is the one place that does it, for the built-in
students, for :class:`DirectEncoding` (a user's multi-step model) and for the exporters'
re-simulations. :func:`unwrap_encoding` is the one place that looks through the wrapper.
"""

from __future__ import annotations

import torch
from torch import nn


def is_static(x: torch.Tensor, input_shape: tuple[int, ...]) -> bool:
    """True for ``[B, *input_shape]`` (no time axis yet)."""
    return x.dim() == len(input_shape) + 1


def repeat_over_time(x: torch.Tensor, timesteps: int) -> torch.Tensor:
    """``[B, ...] -> [T, B, ...]``: the same frame at every step (a view, no copy)."""
    return x.unsqueeze(0).expand(timesteps, *x.shape)


def time_major(x: torch.Tensor, input_shape: tuple[int, ...], timesteps: int) -> torch.Tensor:
    """``[T, B, ...]`` for either input form: static input is direct-encoded."""
    return repeat_over_time(x, timesteps) if is_static(x, input_shape) else x


class DirectEncoding(nn.Module):
    """Repeats a static input T times in front of a user's multi-step model."""

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...], timesteps: int):
        super().__init__()
        self.model = model
        self.input_shape = tuple(input_shape)
        self.timesteps = timesteps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(time_major(x, self.input_shape, self.timesteps))


def unwrap_encoding(model: nn.Module) -> nn.Module:
    """The module whose paths name the layers: a user's model inside :class:`DirectEncoding`,
    else ``model`` itself."""
    return model.model if isinstance(model, DirectEncoding) else model
