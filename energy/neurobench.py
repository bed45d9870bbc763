"""NeuroBench's static and workload metrics of a student (``--neurobench``), computed from the
same counting pass as the energy estimate.

Definitions as the ``neurobench`` package 2.3 computes them (``neurobench.metrics``), under
its names; tests/test_energy_neurobench.py holds these numbers equal to the package's on the
same model and inputs:

* ``Footprint``: bytes of the model's parameters and buffers (``numel x element_size``).
* ``ConnectionSparsity``: zero weights / all weights of the conv and linear layers (biases
  not counted). NeuroBench rounds it to 4 decimals; this is the exact ratio.
* ``ActivationSparsity``: 1 - spikes / (neurons x timesteps x samples) over every spiking
  neuron layer.
* ``SynapticOperations``, per sample: ``Effective_ACs`` = (non-zero input, non-zero weight)
  pairs that meet in layers whose input held only spikes, ``Effective_MACs`` the same in
  layers with analog input (exact at borders, strides and groups; zero weights do no work);
  ``Dense`` = every in-bounds (input, weight) pair of every layer, whatever the values. Bias
  is not an operation. All three follow from the summed event maps: a convolution is linear in
  its input, so convolving the summed map of non-zero inputs with the non-zero-weight kernel
  counts the pairs of every timestep and sample at once.

Where neurokd and the package may differ: NeuroBench decides "spiking" per layer call and
takes -1 for a spike too; neurokd per layer over the whole run and only 0/1 values (or event
counts: k events at a pixel of an event frame are k events here, one non-zero analog input to
NeuroBench). The
package could not run two of its metrics on spikingjelly students (docs/energy.md):
``MembraneUpdates`` returns 0 (it reads snntorch's ``mem``) and ``NeuronOperations`` fails
(``'LIFNode' object has no attribute '_reset_mechanism'``), both swallowed by its
``Benchmark.run``; so neither is reported here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from neurokd.data.encoding import unwrap_encoding

from .events import EventCounts, LayerEvents

_CONNECTION = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class NeuroBenchMetrics:
    footprint: int
    connection_sparsity: float
    activation_sparsity: float | None   # None: no spiking neuron ran
    effective_macs: float
    effective_acs: float
    dense: float

    def to_dict(self) -> dict:
        """Under NeuroBench's names, as its ``Benchmark.run`` returns them."""
        return {"Footprint": self.footprint, "ConnectionSparsity": self.connection_sparsity,
                "ActivationSparsity": self.activation_sparsity,
                "SynapticOperations": {"Effective_MACs": self.effective_macs,
                                       "Effective_ACs": self.effective_acs,
                                       "Dense": self.dense}}


def neurobench_metrics(model: nn.Module, counts: EventCounts) -> NeuroBenchMetrics:
    """The metrics of ``model`` from its counts (``count_events`` on the same model)."""
    root = unwrap_encoding(model)
    modules = {name or type(module).__name__: module for name, module in root.named_modules()}
    effective = {True: 0.0, False: 0.0}
    dense = 0.0
    for layer in counts.layers:
        if layer.geometry is None:
            continue
        pairs, every = _operations(layer, modules[layer.name].weight.detach())
        effective[layer.spiking_input] += pairs
        dense += every
    updates = sum(layer.neuron_updates for layer in counts.layers)
    spikes = sum(layer.active_neuron_updates for layer in counts.layers)
    return NeuroBenchMetrics(
        footprint=_footprint(model), connection_sparsity=_connection_sparsity(root),
        activation_sparsity=1.0 - spikes / updates if updates else None,
        effective_macs=effective[False] / counts.samples,
        effective_acs=effective[True] / counts.samples, dense=dense / counts.samples)


def _operations(layer: LayerEvents, weight: torch.Tensor) -> tuple[float, float]:
    """(non-zero input x non-zero weight pairs, all in-bounds pairs) of the whole run."""
    g = layer.geometry
    events = torch.as_tensor(layer.input_events, dtype=torch.float64).reshape(g.input_shape)
    nonzero = (weight != 0).to(torch.float64).cpu()
    if g.kind == "dense":
        pairs = float(events @ nonzero.sum(0))
        return pairs, float(layer.frames * g.in_per_group * g.out_channels)
    nonzero = nonzero.reshape(g.out_channels, g.in_per_group, *g.kernel)  # conv1d: height 1

    def covered(x: torch.Tensor, w: torch.Tensor) -> float:
        return float(F.conv2d(x.unsqueeze(0), w, None, g.stride, g.padding, g.dilation,
                              g.groups).sum())

    every = covered(torch.ones(g.input_shape, dtype=torch.float64), torch.ones_like(nonzero))
    return covered(events, nonzero), layer.frames * every


def _footprint(model: nn.Module) -> int:
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def _connection_sparsity(root: nn.Module) -> float:
    weights = [m.weight for m in root.modules()
               if isinstance(m, _CONNECTION) and not any(m.children())]
    total = sum(w.numel() for w in weights)
    return float(sum(int((w == 0).sum()) for w in weights)) / total if total else 0.0
