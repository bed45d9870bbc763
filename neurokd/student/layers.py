"""Layer names: which name a student's per-layer numbers carry, wherever they are shown.

One layer is a synaptic module (conv or linear, with its BatchNorm) and the spiking neurons
that follow it, named by the synaptic module's path (``features.0``, ``classifier.1``); its
output spikes are the spikes of those neurons. A neuron module belongs to the synaptic module
that ran last before it (in a residual block, the last conv before the addition), as the
energy counter has always priced it; a neuron module with no synaptic module before it is a
layer of its own, named by its path. Everything per layer uses this rule: ``simulate`` (ONNX
and Lava), the training history's firing rates, the energy report (docs/formats.md, "Layer
names").

:class:`NeuronOwners` applies it as modules run (forward hooks) or as a traced graph lists
them; :func:`neuron_layers` to a list in execution order; :func:`spike_labels` gives each
neuron module a unique label for a file's output names.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from torch import nn

SYNAPTIC = (nn.Conv1d, nn.Conv2d, nn.Linear)  # the synaptic modules of a layer


class NeuronOwners:
    """``layer[neuron path]``: the layer each neuron module belongs to (module doc), learnt in
    execution order: call :meth:`synapse` when a synaptic module runs, :meth:`neuron` when a
    neuron module does (the first call decides, as in a multi-step or a per-step run)."""

    def __init__(self) -> None:
        self.last: str | None = None
        self.layer: dict[str, str] = {}

    def synapse(self, name: str) -> None:
        self.last = name

    def neuron(self, name: str) -> str:
        return self.layer.setdefault(name, self.last or name)


def neuron_layers(modules: Iterable[tuple[str, bool]]) -> dict[str, str]:
    """``{neuron path: layer name}`` for ``(path, is_synaptic)`` pairs in execution order.

    >>> neuron_layers([("features.0", True), ("features.2", False), ("classifier.1", True)])
    {'features.2': 'features.0'}
    """
    owners = NeuronOwners()
    for name, synaptic in modules:
        if synaptic:
            owners.synapse(name)
        else:
            owners.neuron(name)
    return owners.layer


def spike_labels(layers: dict[str, str]) -> dict[str, str]:
    """A unique label per neuron module of ``layers`` (:func:`neuron_layers`): its layer's name,
    or its own path where its layer has several neuron modules."""
    shared = Counter(layers.values())
    return {name: layer if shared[layer] == 1 else name for name, layer in layers.items()}
