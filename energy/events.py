"""What a counted run leaves behind, as plain records: :class:`LayerEvents` per synaptic layer
and :class:`EventCounts` for the run, and :func:`synops`, the synaptic operations some input
events cause. Kept apart from the counter (``count.py``, hooks on a torch model) so that pricing,
break-even and the profiles import no torch: ``neurokd energy profiles`` answers at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from neurokd.student.geometry import LayerGeometry


def synops(events: Any, geometry: LayerGeometry) -> float:
    """Synaptic operations caused by ``events`` (per-position counts of the layer's input)."""
    import torch  # here, not at the top: pricing and the profiles need no torch
    import torch.nn.functional as F

    counts = torch.as_tensor(np.asarray(events, dtype=np.float64))
    if tuple(counts.shape) != tuple(geometry.input_shape):
        counts = counts.reshape(geometry.input_shape)
    if geometry.kind == "dense":
        return float(counts.sum()) * geometry.out_channels
    g = geometry
    ones = torch.ones(g.groups, g.in_per_group, *g.kernel, dtype=torch.float64)
    covered = F.conv2d(counts.unsqueeze(0), ones, None, g.stride, g.padding, g.dilation, g.groups)
    return float(covered.sum()) * (g.out_channels // g.groups)


@dataclass
class LayerEvents:
    """What one synaptic layer saw over a whole run (sums over samples and timesteps)."""

    name: str
    geometry: LayerGeometry | None      # None: a neuron layer with no synaptic layer before it
    input_events: np.ndarray | None     # non-zero inputs per position
    frames: int                         # sample-timesteps the layer ran on
    spiking_input: bool                 # every input value was 0 or 1 (or, for inputs with
                                        # a time axis, a whole number >= 0: event counts)
    neuron_updates: int = 0             # of the neuron layer(s) it feeds: neurons x frames
    output_spikes: np.ndarray | None = None  # spikes per neuron position
    has_bias: bool = False              # a bias, or a BatchNorm after it (a bias once folded)
    writes_outputs: bool = False        # outputs go to memory (an ANN: no neurons hold them)

    @property
    def input_event_rate(self) -> float | None:
        """Share of input positions x frames holding an event (a spike, or a non-zero analog
        value): how busy the layer's input is, not how often its own neurons fire."""
        if self.input_events is None or not self.frames:
            return None
        return float(self.input_events.sum()) / (self.frames * self.input_events.size)

    @property
    def active_neuron_updates(self) -> int:
        return 0 if self.output_spikes is None else int(round(float(self.output_spikes.sum())))

    @property
    def output_firing_rate(self) -> float | None:
        """Spikes per neuron update of the neurons the layer feeds."""
        return self.active_neuron_updates / self.neuron_updates if self.neuron_updates else None


@dataclass
class EventCounts:
    layers: list[LayerEvents]
    samples: int
    timesteps: int
