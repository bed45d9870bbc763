"""How big an exported network is on Loihi 2, and how many neuro cores it needs.

Counted from the file's integer network (the chain's layers or the graph's groups and
synapses, relay and max-pool groups included): neurons; synapses (one per connection a spike
travels: a conv's kernel taps that land inside the padded input, times channels); weights
stored (the kernel and matrix entries the file holds); synaptic memory at one byte per synapse
(8-bit weights, every connection stored: the upper bound; weight sharing by conv kernels is
not assumed). Cores: each neuron group needs ``max(ceil(neurons / 8192), ceil(synaptic bytes
into it / 192 KiB))`` cores of its own, summed over groups; the cores its neurons alone need
(``ceil(neurons / 8192)`` per group) are the lower bound a compiler sharing conv kernels
approaches.

Limits (:data:`LOIHI2`): Intel Labs, "Taking Neuromorphic Computing to the Next Level with
Loihi 2", technology brief (2021), the Loihi 2 column of its table: 128 neuro cores per chip,
up to 1 M neurons and 120 M synapses per chip, 192 KB of memory per core, shared flexibly
between neuron state and synapses. Per core that is 8,192 neurons (1 M / 128). Approximate:
the memory a core gives to synapses depends on the neuron model's state and the synaptic
encoding Lava's compiler picks (sparse, dense, or convolutional with shared kernels), which
this count does not model, and groups are not packed together onto shared cores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from neurokd.student.geometry import LayerGeometry

WEIGHT_BYTES = 1              # 8-bit weights


@dataclass(frozen=True)
class CoreLimits:
    """One neuro core's published capacity; the count of cores rests on these numbers."""

    name: str
    cores_per_chip: int
    neurons_per_core: int
    memory_per_core: int          # bytes, shared between neuron state and synapses
    source: str


LOIHI2 = CoreLimits("Loihi 2", 128, 8192, 192 * 1024,
                    "Intel Labs, Loihi 2 technology brief (2021): 128 cores, 1 M neurons, "
                    "120 M synapses, 192 KB per core")


@dataclass(frozen=True)
class DeployedSize:
    neurons: int
    synapses: int                 # connections
    weights: int                  # entries stored in the file
    synaptic_bytes: int
    cores: int
    groups: int                   # neuron processes (relays and max pools included)
    limits: CoreLimits = LOIHI2
    neuron_cores: int = 0         # the cores the neurons alone need (synapses shared freely)

    @property
    def chips(self) -> int:
        return math.ceil(self.cores / self.limits.cores_per_chip)

    def lines(self) -> list[str]:
        """What ``export`` prints about the deployed size."""
        return [f"  deployed size: {self.neurons:,} neurons in {self.groups} groups, "
                f"{self.synapses:,} synapses ({self.weights:,} weights stored), synaptic "
                f"memory {_size(self.synaptic_bytes)} at 8 bits per synapse; needs about "
                f"{self.cores} {self.limits.name} cores ({self.chips} chip"
                f"{'s' if self.chips > 1 else ''}; {self.neuron_cores} for the neurons alone; "
                f"{self.limits.neurons_per_core:,} neurons and "
                f"{_size(self.limits.memory_per_core)} per core, docs/loihi.md)"]

    def to_json(self) -> dict:
        return {"neurons": self.neurons, "synapses": self.synapses, "weights": self.weights,
                "synaptic_bytes": self.synaptic_bytes, "cores": self.cores,
                "chips": self.chips, "groups": self.groups, "neuron_cores": self.neuron_cores}


def _size(count: int) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


def connections(geometry: LayerGeometry) -> int:
    """Synapses of one conv / dense layer: for a conv, the (output, kernel tap) pairs whose
    input lies inside the image (padding taps connect to nothing), times the channels."""
    if geometry.kind == "dense":
        return geometry.out_channels * geometry.in_per_group
    taps = 1
    for size, out, k, s, p, d in zip(geometry.input_shape[1:], geometry.output_shape[1:],
                                     geometry.kernel, geometry.stride, geometry.padding,
                                     geometry.dilation, strict=True):
        taps *= sum(1 for o in range(out) for j in range(k) if 0 <= o * s - p + j * d < size)
    return taps * geometry.in_per_group * geometry.out_channels


def deployed_size(groups: list[tuple[int, list[LayerGeometry]]],
                  limits: CoreLimits = LOIHI2) -> DeployedSize:
    """``groups``: per neuron group, its neuron count and the geometries of the synapses into
    it."""
    neurons = synapses = weights = cores = by_neurons = 0
    for count, incoming in groups:
        links = sum(connections(g) for g in incoming)
        stored = sum(g.out_channels * g.fan_in for g in incoming)
        neurons, synapses, weights = neurons + count, synapses + links, weights + stored
        cores += max(1, math.ceil(count / limits.neurons_per_core),
                     math.ceil(links * WEIGHT_BYTES / limits.memory_per_core))
        by_neurons += math.ceil(count / limits.neurons_per_core)
    return DeployedSize(neurons, synapses, weights, synapses * WEIGHT_BYTES, cores,
                        len(groups), limits, by_neurons)
