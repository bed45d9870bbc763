"""The memory-aware energy model (``--energy-model memory``): Lemaire et al. 2022, as
spikingjelly 2.0 implements it (``op_counter.analytical_energy``, ``estimate_lemaire_energy``).

Lemaire, Cordone, Castagnetti, Novac, Courtois, Miramond, "An analytical estimation of spiking
neural networks energy efficiency", ICONIP 2022 (arXiv 2210.13107). On top of the operations,
every synaptic layer pays for computing addresses, reading its inputs, reading the weights an
event touches (all of them for analog input), writing its output spikes, and reading and
writing membrane potentials; the energy of an access grows with the size of the buffer it goes
to. The tests hold these counters equal to spikingjelly's estimator on the same model and
inputs (tests/test_energy_memory.py).

This module holds the model's counters (functions of one layer's ``LayerEvents``), the buffers
they access, the SRAM cost curve and the word sizes (:data:`LAYOUTS`). The counts are in
accesses (words); a :class:`MemoryLayout` turns them into bytes at pricing time, so one count
prices a float run (32-bit words), an int8 accelerator or a deployed Loihi network.

Conventions, as spikingjelly's estimator counts them (docs/energy.md says why):

* One sample and one timestep at a time, i.e. spikingjelly in single-step mode with batch 1:
  buffers hold one frame of one sample, so a per-inference figure does not depend on the batch
  size the counting ran with (spikingjelly's multi-step mode sizes an analog input buffer for
  all T frames and the whole batch of one call).
* A spike fans out to ``C_out/groups * prod(ceil(k/s))`` synaptic operations of a conv and
  reads ``C_out/groups * kH * kW`` weights and potentials, borders included (the compute model's
  SOPs are border exact); a dense layer's spike fans out to ``out_features``.
* A layer with a bias (or a BatchNorm after it, which folds into a bias at inference) adds and
  reads one bias per output and timestep.
* Output spikes are written to a spike FIFO of ``FIFO_EVENTS`` messages; a layer's output is
  written to memory only in an ANN (in an SNN its neurons hold the potentials).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from neurokd.errors import ConfigError

from .events import LayerEvents, synops

# What one access moves: a spike message (an address), an analog value (input or ANN output),
# a weight, a bias, a membrane potential.
WORDS = ("event", "activation", "weight", "bias", "potential")
FIFO_EVENTS = 1000  # spike FIFO depth in messages: Lemaire et al.'s experiments, spikingjelly's default
# The SRAM cost curve: (capacity in bytes, profile key of the pJ per byte there); 0 pJ at 0
# bytes, linear in between, flat above the last point (Lemaire et al., after Horowitz 2014).
SRAM_POINTS = ((8 * 1024, "sram_8kib_pj"), (32 * 1024, "sram_32kib_pj"),
               (1024 * 1024, "sram_1mib_pj"))

LEMAIRE = ("Lemaire et al., 'An analytical estimation of spiking neural networks energy "
           "efficiency', ICONIP 2022 (arXiv 2210.13107)")


@dataclass(frozen=True)
class MemoryLayout:
    """Bytes per word of each kind (:data:`WORDS`): the access sizes of one piece of hardware."""

    name: str
    word_bytes: Mapping[str, int] = field(hash=False)
    source: str

    def __post_init__(self) -> None:
        if set(self.word_bytes) != set(WORDS) or any(
                isinstance(v, bool) or not isinstance(v, int) or v < 1
                for v in self.word_bytes.values()):
            raise ConfigError(f"memory layout {self.name}: bytes per word must be integers >= 1 "
                              f"for exactly {', '.join(WORDS)}")
        object.__setattr__(self, "word_bytes",
                           MappingProxyType({k: self.word_bytes[k] for k in WORDS}))


LAYOUTS: dict[str, MemoryLayout] = {
    "32bit": MemoryLayout(
        "32bit", dict.fromkeys(WORDS, 4),
        f"{LEMAIRE}: every value, weight, potential and spike address is one 32-bit word "
        "(spikingjelly 2.0's Lemaire estimator alike)"),
    "int8": MemoryLayout(
        "int8", {"event": 4, "activation": 1, "weight": 1, "bias": 4, "potential": 4},
        "8-bit weights and activations, 32-bit biases and accumulators (the membrane "
        "potentials): integer-only inference as in Jacob et al., CVPR 2018; spike addresses "
        "32-bit as in Lemaire et al."),
    "loihi": MemoryLayout(
        "loihi", {"event": 4, "activation": 1, "weight": 1, "bias": 2, "potential": 3},
        "Loihi as Lava 0.10 / lava-dl 0.6 model it: 8-bit weights (num_weight_bits=8), a 13-bit "
        "bias mantissa with a 3-bit exponent (2 bytes), the 24-bit voltage v "
        "(lava/proc/lif/models.py: uv_bitwidth = 24; CUBA's 24-bit current u is not a "
        "Lemaire term), 8-bit graded input into the first layer (neurokd's netx export); spike "
        "messages as 32-bit addresses as in Lemaire et al. (Loihi's message format is not "
        "published)"),
}


def sram_pj_per_byte(costs: Mapping[str, float], capacity_bytes: float) -> float:
    """pJ per byte of an access to an SRAM of ``capacity_bytes``, from a profile's
    ``SRAM_POINTS`` keys."""
    points = [(0.0, 0.0), *((float(size), costs[key]) for size, key in SRAM_POINTS)]
    capacity = min(max(float(capacity_bytes), 0.0), points[-1][0])
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if capacity <= x1:
            return y0 + (y1 - y0) / (x1 - x0) * (capacity - x0)
    raise AssertionError("unreachable: the capacity is clamped to the last point")


# --- buffers: the words of each kind a layer's buffer holds (its capacity, per frame) -------

def _outputs(layer: LayerEvents) -> int:
    return math.prod(layer.geometry.output_shape) if layer.geometry else 0


def _inputs(layer: LayerEvents) -> int:
    return math.prod(layer.geometry.input_shape) if layer.geometry else 0


def _parameters(layer: LayerEvents) -> dict[str, float]:
    g = layer.geometry
    if g is None:
        return {}
    return {"weight": g.out_channels * g.fan_in, "bias": g.out_channels if layer.has_bias else 0}


BUFFERS: dict[str, Callable[[LayerEvents], dict[str, float]]] = {
    "spike_fifo": lambda layer: {"event": FIFO_EVENTS},
    "input_frame": lambda layer: {"activation": _inputs(layer)},
    "parameters": _parameters,
    "output_potentials": lambda layer: {"potential": _outputs(layer)},
    "neuron_potentials": lambda layer: {"potential": layer.neuron_updates / max(layer.frames, 1)},
    "output_frame": lambda layer: {"activation": _outputs(layer)},
}


# --- counters: one layer's run totals -> accesses or operations --------------------------

def _input_spikes(layer: LayerEvents) -> float:
    if layer.geometry is None or not layer.spiking_input:
        return 0.0
    return float(layer.input_events.sum())


def _fanout(layer: LayerEvents) -> tuple[int, int]:
    """(synaptic operations, weights and potentials touched) per input spike."""
    g = layer.geometry
    if g.kind == "dense":
        return g.out_channels, g.out_channels
    per_group = g.out_channels // g.groups
    reach = math.prod(math.ceil(k / s) for k, s in zip(g.kernel, g.stride, strict=True))
    return per_group * reach, per_group * g.kernel[0] * g.kernel[1]


def _dense(layer: LayerEvents) -> bool:
    return layer.geometry is not None and not layer.spiking_input


def fanout_synops(layer: LayerEvents) -> float:
    return _input_spikes(layer) * _fanout(layer)[0] if layer.geometry else 0.0


def bias_adds(layer: LayerEvents) -> float:
    """One add per output and timestep (event driven or not), and one bias read with it."""
    return float(layer.frames * _outputs(layer)) if layer.geometry and layer.has_bias else 0.0


def address_adds(layer: LayerEvents) -> float:
    if layer.geometry is None:
        return 0.0
    if layer.spiking_input:
        return _input_spikes(layer) * _fanout(layer)[1]
    g = layer.geometry
    per_frame = _inputs(layer) + _outputs(layer)
    if g.kind == "conv":  # the kernel's addresses, once per call (one frame)
        per_frame += g.out_channels * g.kernel[0] * g.kernel[1]
    return float(layer.frames * per_frame)


def address_macs(layer: LayerEvents) -> float:
    """A conv's input spike needs two multiply-adds to locate its first output."""
    if layer.geometry is None or layer.geometry.kind != "conv":
        return 0.0
    return 2.0 * _input_spikes(layer)


def event_reads(layer: LayerEvents) -> float:
    return _input_spikes(layer)


def activation_reads(layer: LayerEvents) -> float:
    """A dense conv reads one input per multiply-accumulate, a dense linear each input once."""
    if not _dense(layer):
        return 0.0
    g = layer.geometry
    per_frame = g.macs_per_frame if g.kind == "conv" else _inputs(layer)
    return float(layer.frames * per_frame)


def event_writes(layer: LayerEvents) -> float:
    return float(layer.active_neuron_updates)


def activation_writes(layer: LayerEvents) -> float:
    return float(layer.frames * _outputs(layer)) if _dense(layer) and layer.writes_outputs else 0.0


def weight_reads(layer: LayerEvents) -> float:
    if layer.geometry is None:
        return 0.0
    if layer.spiking_input:
        return _input_spikes(layer) * _fanout(layer)[1]
    return float(layer.frames * layer.geometry.macs_per_frame)


def synapse_potential_accesses(layer: LayerEvents) -> float:
    """An input spike reads and writes the potential of every output it touches."""
    return 2.0 * _input_spikes(layer) * _fanout(layer)[1] if layer.geometry else 0.0


def neuron_potential_accesses(layer: LayerEvents) -> float:
    """Each neuron reads and writes its potential once per timestep."""
    return 2.0 * layer.neuron_updates


def exact(counter: Callable[[LayerEvents], float], per_synop: int = 1
          ) -> Callable[[LayerEvents], float]:
    """``counter`` with the exact fan-out for spike input (``per_synop`` accesses per synaptic
    operation, ``count.synops``: each output a spike reaches, borders and strides exact);
    analog input counts as ``counter`` does."""
    def count(layer: LayerEvents) -> float:
        if layer.geometry is None or not layer.spiking_input:
            return counter(layer)
        return per_synop * synops(layer.input_events, layer.geometry)
    count.__doc__ = f"{counter.__name__}, exact fan-out"
    return count
