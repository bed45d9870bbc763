"""How a sample becomes T timesteps: the input encodings, and the wrapper for a user's model.

A student takes ``[B, ...]`` static input (encoded inside the model) or ``[T, B, ...]`` input
that already has a time axis (event frames, rate-coded spikes). :data:`ENCODINGS` names the
encodings of static data (``--encoding``). Direct encoding repeats the static sample at
every timestep: :func:`repeat_over_time` is the one place that does it, for the built-in
students, for :class:`DirectEncoding` (a user's multi-step model) and for the exporters'
re-simulations. :func:`unwrap_encoding` is the one place that looks through the wrapper.
Rate encoding is a seeded transform of the data (:func:`rate_spikes`, applied per sample by
``neurokd.data``), so a split's spike trains are the same in every run, export and
simulation. An ANN (the teacher) sees a sample with a time axis as its average over time
(:func:`time_average`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class Encoding:
    """How a static sample reaches the student's first layer."""

    name: str
    spikes: bool   # the first layer receives binary spikes (else analog values)
    summary: str


ENCODINGS: dict[str, Encoding] = {e.name: e for e in (
    Encoding("direct", False, "the analog sample repeated at every timestep: the first layer "
             "multiplies"),
    Encoding("rate", True, "Bernoulli spikes at every timestep, P(spike) = the intensity "
             "normalised to [0, 1], seeded per sample: the first layer adds"),
)}

_SPLIT_CODES = {"train": 1, "val": 2, "test": 3}


def sample_seed(seed: int, split: str, index: int) -> int:
    """A 63-bit seed for sample ``index`` of ``split`` in a run seeded ``seed``."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, _SPLIT_CODES[split], int(index)])
    low, high = (int(v) for v in state.generate_state(2, np.uint32))
    return ((high & 0x7FFFFFFF) << 32) | low


def rate_spikes(intensity: torch.Tensor, timesteps: int, seed: int) -> torch.Tensor:
    """``[T, *intensity.shape]`` 0/1 spikes, each 1 with probability ``intensity`` (in [0, 1])."""
    generator = torch.Generator().manual_seed(seed)
    draws = torch.rand((timesteps, *intensity.shape), generator=generator)
    return (draws < intensity.unsqueeze(0)).to(torch.float32)


def time_average(x: torch.Tensor, input_shape: tuple[int, ...]) -> torch.Tensor:
    """What an ANN sees: a static ``[B, ...]`` sample as it is, ``[T, B, ...]`` frames or
    spikes as their mean over time (event counts per timestep; for rate-coded spikes, the
    spike rate, an estimate of the intensity)."""
    return x if is_static(x, input_shape) else x.mean(0)


def batch_axis(x: torch.Tensor, input_shape: tuple[int, ...]) -> int:
    """0 for static ``[B, ...]`` input, 1 for ``[T, B, ...]``."""
    return 0 if is_static(x, input_shape) else 1


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
