"""Break-even input spike rates: the input event rate below which a spiking layer costs less
than the ANN layer it stands for.

A spiking layer's energy is a line in its input event rate ``r`` (spikes per input position
and timestep): every quantity an input spike causes (synaptic ops, and under the memory model
its address computations, FIFO read, weight reads and potential accesses) is linear in the
input events, and the rest (neuron updates, output spikes, bias adds) does not depend on them.
:func:`rate_line` prices the layer twice, with no input spikes and with the measured event map
scaled to rate 1 (the same spatial distribution; a uniform one when no spike came in), holding
the layer's other counts at their measured values. The break-even rate solves
``E_snn(r) = E_ann`` for that line; a layer whose input is analog (the encoding layer) has none.
A rate <= 0 means the layer costs more than the ANN layer even with a silent input; above 1,
it costs less at any rate.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from .events import LayerEvents


class Prices(Protocol):
    """What break-even needs of a price list (``pricing.Prices`` is one): a layer's energy
    per kind of cost. A protocol, not an import: pricing.py imports this module."""

    def layer_energy(self, layer: LayerEvents, samples: int) -> tuple[Any, dict[str, float]]:
        ...


def rate_line(layer: LayerEvents, prices: Prices, samples: int) -> tuple[float, float] | None:
    """``(pJ per inference at input rate 0, pJ per unit of input rate)``; None when the layer's
    input is not spikes."""
    if layer.geometry is None or not layer.spiking_input or not layer.frames:
        return None
    events = np.asarray(layer.input_events, dtype=np.float64)
    at_rate_one = layer.frames * events.size
    total = float(events.sum())
    unit_map = events * (at_rate_one / total) if total > 0 else \
        np.full_like(events, float(layer.frames))
    silent = _energy(replace(layer, input_events=np.zeros_like(events)), prices, samples)
    full = _energy(replace(layer, input_events=unit_map), prices, samples)
    return silent, full - silent


def _energy(layer: LayerEvents, prices: Prices, samples: int) -> float:
    return sum(prices.layer_energy(layer, samples)[1].values())


def break_even_rate(line: tuple[float, float] | None, ann_energy_pj: float) -> float | None:
    """The input rate at which the line reaches ``ann_energy_pj``; None without a line or when
    input spikes cost nothing (a flat line)."""
    if line is None or line[1] <= 0:
        return None
    silent, per_rate = line
    return (ann_energy_pj - silent) / per_rate
