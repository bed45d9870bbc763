"""A Loihi network that is not a chain: neuron groups joined by synapses, and its two models.

lava-dl's netx HDF5 holds a chain of layers; a residual student (``--student resnet``,
spikingjelly's spiking ResNet / SEW-ResNet) is a graph. Lava itself runs any graph: an ``InPort``
that several ``OutPort`` s connect to sums what they send, so a residual add is two synapse
processes (``lava.proc.dense`` / ``lava.proc.conv``) into one neuron group
(``lava.proc.lif.LIFReset``). :class:`GraphNetwork` is that graph in Loihi's integers:

- a :class:`NeuronGroup` is one ``CUBA`` neuron process (shape, per-channel bias, ``iDecay`` /
  ``vDecay`` / ``vThMant``) with a *role* from :data:`GROUP_ROLES`: a student's neuron layer, the
  readout, a relay (copies a spike group one step later) or a max pool (fires when any input in
  its window fired);
- a :class:`GraphSynapse` is one conv or dense synapse process from a group (or the input,
  index ``-1``) into a group.

Time. Every synapse delays by one step, so a group runs ``depth`` steps behind the input
(``depth`` = 1 + the depth of its sources). Branches that reach a group through different
numbers of layers are aligned with relay groups (``build_graph``), so all sources of a group
have one depth and every group has a well-defined one; :func:`graph_problems` refuses a network
where they do not. Step ``t`` of a group in the models here is then step ``t`` of the sample;
the Lava runner reads group ``g`` at ``nT + t + depth(g)``.

:func:`run_graph_fixed_point` is the integer model (Lava's ``fixed_pt`` arithmetic, as
``fixed_point.py`` has it for the chain: conv sums wrap at 24 bits, dense weights pass through
Lava's clip/truncate, the CUBA update), relay and max-pool groups included as the neurons they
are; :func:`run_graph_float` the float network the integers approximate, in which a relay is
the identity and a max pool ``F.max_pool2d``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from neurokd.student.geometry import HasGeometry, LayerGeometry

from ..neurons import NeuronParams, neuron_steps
from .fixed_point import (
    DECAY_UNITY,
    STATE_LIMIT,
    STATE_SHIFT,
    CubaNeuron,
    QuantizedNetwork,
    decay,
    wrap24,
)

INPUT = -1                  # a synapse's source index for the network's input


@dataclass(frozen=True)
class GroupRole:
    """What a neuron group is for. The reader checks a relay's and a pool's integers against
    their role because other values would no longer copy (relay) or OR (max pool) the spikes
    they receive, and the float model would then describe another network."""

    name: str
    summary: str
    spiking: bool            # False: never fires; its v is read (the readout)
    fixed: bool              # relay / max pool: weights 2, no memory, vThMant 1 (one spike fires)


GROUP_ROLES: dict[str, GroupRole] = {r.name: r for r in (
    GroupRole("layer", "a neuron layer of the student; its synapses sum into it (a residual add "
              "is two synapses into one group)", True, False),
    GroupRole("readout", "the last layer without neurons: v is the integer logit, it never "
              "fires", False, False),
    GroupRole("relay", "copies one spike group one step later, so that branches meet in step",
              True, True),
    GroupRole("maxpool", "fires when any input in its window fired: max pooling of binary "
              "spikes", True, True),
)}
# The integers of relay and max-pool groups: with no memory (iDecay = vDecay = 4096),
# v = 64 * 2 * (spikes in the window) > vThMant * 64 = 64 exactly when one spike came in.
FIXED_WEIGHT = 2
FIXED_NEURON = CubaNeuron(DECAY_UNITY, DECAY_UNITY, 1)


@dataclass
class NeuronGroup:
    """One ``CUBA`` neuron process; ``shape`` per sample in C,H,W order (or ``(N,)``)."""

    name: str                      # the student's module path; relays: "SOURCE@relayK"
    role: str                      # a GROUP_ROLES name
    shape: tuple[int, ...]
    bias: np.ndarray               # int64 bias mantissa per channel (shape[0])
    neuron: CubaNeuron
    scale: float = 1.0             # integer activation units per unit of the float membrane
    quantization: dict = field(default_factory=dict)

    @property
    def spiking(self) -> bool:
        return GROUP_ROLES[self.role].spiking

    @property
    def kind(self) -> str:
        """The synapses into it, for the quantization table ("conv x2": a residual add)."""
        return self.quantization.get("kind", self.role)


@dataclass
class GraphSynapse(HasGeometry):
    """One conv or dense synapse process; a dense synapse from a C,H,W group takes its spikes
    flattened in C,H,W order."""

    name: str                      # the student's module path (identity shortcuts: "X+identity")
    source: int                    # group index, or INPUT
    target: int
    geometry: LayerGeometry
    weight: np.ndarray             # int64 (conv: out, in/groups, kH, kW; dense: out, in)


@dataclass
class GraphNetwork:
    """Groups in execution order (every synapse's source before its target) and synapses."""

    groups: list[NeuronGroup]
    synapses: list[GraphSynapse]
    input_shape: tuple[int, ...]
    timesteps: int
    input_scale: float
    input_min: int
    input_max: int
    input_spikes: bool = False

    def __post_init__(self) -> None:
        problems = graph_problems(self)
        if problems:
            raise ValueError(problems[0])

    def incoming(self, index: int) -> list[GraphSynapse]:
        return [s for s in self.synapses if s.target == index]

    @property
    def depths(self) -> list[int]:
        """Steps each group runs behind the input (``graph_problems`` made them unique)."""
        return group_depths(self.groups, self.synapses)

    @property
    def readout(self) -> NeuronGroup:
        return self.groups[-1]

    # The same input handling and logit scaling as the chain's QuantizedNetwork.
    quantize_input = QuantizedNetwork.quantize_input

    def logits(self, readout: np.ndarray) -> np.ndarray:
        """Per-step float logits from the readout's integer ``v`` (or its spikes)."""
        last = self.readout
        if last.spiking:
            return readout.astype(np.float64)
        return readout.astype(np.float64) / ((1 << STATE_SHIFT) * last.scale)


def group_depths(groups: list, synapses: list) -> list[int]:
    """Each group's depth: 1 + the largest depth among its sources (the input: 0). Groups must
    come in execution order (checked by ``graph_problems`` first)."""
    depths: list[int] = []
    for index in range(len(groups)):
        sources = [s.source for s in synapses if s.target == index]
        depths.append(1 + max((0 if s == INPUT else depths[s] for s in sources), default=0))
    return depths


def graph_problems(network) -> list[str]:
    """Why ``network`` (integer or float) is not a graph Lava and the models can run, worst
    first (empty when it is): synapses to nowhere, cycles, shapes that do not fit, branches
    not aligned in time, a readout that is not the one group nothing leaves."""
    groups, synapses = network.groups, network.synapses
    count = len(groups)
    if not groups:
        return ["no neuron groups"]
    names = [g.name for g in groups]
    if len(set(names)) != count:
        return ["group names must be unique"]
    for j, syn in enumerate(synapses):
        for end, value in (("source", syn.source), ("target", syn.target)):
            low = INPUT if end == "source" else 0
            if not isinstance(value, int) or not low <= value < count:
                return [f"synapse {j} ({syn.name}): its {end} is group {value}, but there are "
                        f"{count} groups (0..{count - 1}{', or -1: the input' if low < 0 else ''})"]
    cycle = find_cycle(count, [(s.source, s.target) for s in synapses])
    if cycle:
        return ["the synapses form a cycle: " + " -> ".join(names[i] for i in cycle)]
    backwards = [s for s in synapses if s.source >= s.target]
    if backwards:
        syn = backwards[0]
        return [f"synapse {syn.name}: group {names[syn.source]} comes after its target "
                f"{names[syn.target]}; groups must be listed in execution order"]
    depths = group_depths(groups, synapses)
    problems: list[str] = []
    for index, group in enumerate(groups):
        seen = sorted({0 if s.source == INPUT else depths[s.source]
                       for s in synapses if s.target == index})
        if len(seen) > 1:
            problems.append(f"the synapses into group {group.name} come from depths "
                            f"{', '.join(map(str, seen))}: its branches are not aligned in time "
                            "(relay groups must even them out)")
    for index, group in enumerate(groups):
        role = GROUP_ROLES.get(group.role)
        if role is None:
            return [f"group {group.name}: role {group.role!r} is none of "
                    f"{', '.join(GROUP_ROLES)}"]
        fed = [s for s in synapses if s.target == index]
        if not fed:
            problems.append(f"group {group.name} receives no synapse")
        if role.name == "readout" and index != count - 1:
            problems.append(f"group {group.name} is a readout but not the last group")
        if index == count - 1 and any(s.source == index for s in synapses):
            problems.append(f"the last group {group.name} feeds other groups: it must be the "
                            "readout")
        if index < count - 1 and not any(s.source == index for s in synapses):
            problems.append(f"group {group.name} feeds nothing (only the last group may)")
        if role.fixed and (len(fed) != 1 or fed[0].source == INPUT):
            problems.append(f"{role.name} group {group.name} must receive exactly one synapse "
                            "from a spiking group")
        problems += _shape_problems(network, index, fed)
    return problems


def _shape_problems(network, index: int, fed: list) -> list[str]:
    group = network.groups[index]
    problems = []
    for syn in fed:
        source = network.input_shape if syn.source == INPUT else \
            network.groups[syn.source].shape
        geometry = syn.geometry
        expected_in = (math.prod(source),) if geometry.kind == "dense" else tuple(source)
        expected_out = (math.prod(group.shape),) if geometry.kind == "dense" else group.shape
        if geometry.kind == "conv" and len(source) != 3:
            problems.append(f"synapse {syn.name}: a conv on a {len(source)}-D source")
        elif tuple(geometry.input_shape) != expected_in:
            problems.append(f"synapse {syn.name}: takes {tuple(geometry.input_shape)} but its "
                            f"source gives {tuple(source)}")
        elif tuple(geometry.output_shape) != expected_out:
            problems.append(f"synapse {syn.name}: gives {tuple(geometry.output_shape)} but its "
                            f"target {group.name} has shape {tuple(group.shape)}")
        weight_shape = ((geometry.out_channels, geometry.in_per_group, *geometry.kernel)
                        if geometry.kind == "conv" else
                        (geometry.out_channels, geometry.in_per_group))
        if tuple(syn.weight.shape) != weight_shape:
            problems.append(f"synapse {syn.name}: weight of shape {tuple(syn.weight.shape)}, its "
                            f"geometry needs {weight_shape}")
    if np.shape(group.bias) != (group.shape[0],):
        problems.append(f"group {group.name}: {np.size(group.bias)} biases for "
                        f"{group.shape[0]} channels")
    return problems


def find_cycle(count: int, edges: list[tuple[int, int]]) -> list[int]:
    """A cycle among ``count`` nodes as ``[a, b, ..., a]`` (empty when there is none); edges
    from ``INPUT`` start nowhere."""
    following: dict[int, list[int]] = {}
    for source, target in edges:
        if source != INPUT:
            following.setdefault(source, []).append(target)
    state = [0] * count              # 0 unseen, 1 on the current path, 2 finished
    for start in range(count):
        if state[start]:
            continue
        path, stack = [start], [iter(following.get(start, ()))]
        state[start] = 1
        while stack:                 # iterative: a hostile file may chain 100,000 groups
            step = next(stack[-1], None)
            if step is None:
                state[path.pop()] = 2
                stack.pop()
            elif state[step] == 1:
                return path[path.index(step):] + [step]
            elif state[step] == 0:
                state[step] = 1
                path.append(step)
                stack.append(iter(following.get(step, ())))
    return []


# ---------------------------------------------------------------- the integer model


def plain_dense_weights(weight: np.ndarray) -> np.ndarray:
    """What Lava's bit-accurate Dense multiplies with when given ``weight`` with
    ``num_weight_bits=8`` and ``weight_exp=0`` (no netx re-scaling): its sign mode, then
    ``clip_weights`` and ``truncate_weights`` (``lava/utils/weightutils.py``)."""
    w = weight.astype(np.int64)
    if w.min() >= 0:                                   # excitatory: 0..255, no truncation
        return np.clip(w, 0, 255)
    if w.max() <= 0:                                   # inhibitory: -255..0
        return -np.clip(-w, 0, 255)
    return (np.clip(w, -256, 255) >> 1) << 1           # mixed: one bit is the sign


@dataclass
class GraphRun:
    spikes: dict[int, np.ndarray]  # per spiking group index: uint8 [N, T, *shape]
    readout: np.ndarray            # int64 [N, T, *shape]: readout v (or spikes of the last group)
    saturated: int                 # v values that hit the 24-bit clip

    def first(self, count: int) -> GraphRun:
        return GraphRun({k: s[:count] for k, s in self.spikes.items()}, self.readout[:count],
                        self.saturated)


def graph_synaptic_input(synapse: GraphSynapse, events: np.ndarray,
                         cache: dict[int, np.ndarray]) -> np.ndarray:
    """Integer activation a synapse delivers for source events ``[N, *source_shape]``."""
    if synapse.kind == "dense":
        key = id(synapse)
        if key not in cache:
            cache[key] = plain_dense_weights(synapse.weight)
        return events.reshape(len(events), -1).astype(np.int64) @ cache[key].T
    # float64 holds these integer sums exactly (far below 2**53); Lava wraps them at 24 bits
    result = F.conv2d(torch.from_numpy(events.astype(np.float64)),
                      torch.from_numpy(synapse.weight.astype(np.float64)),
                      stride=synapse.stride, padding=synapse.padding,
                      dilation=synapse.dilation, groups=synapse.groups)
    return wrap24(result.round().to(torch.int64).numpy())


def run_graph_fixed_point(network: GraphNetwork, inputs: np.ndarray) -> GraphRun:
    """The network on integer inputs (graded ``[N, *input_shape]``, the same at every step,
    or spikes ``[N, T, *input_shape]``), each group's step ``t`` from its sources' step ``t``:
    the Lava run with every group's depth taken out."""
    count, steps = len(inputs), network.timesteps
    groups = network.groups
    states = [(np.zeros((count, *g.shape), np.int64), np.zeros((count, *g.shape), np.int64))
              for g in groups]
    spikes = {k: np.zeros((count, steps, *g.shape), np.uint8)
              for k, g in enumerate(groups) if g.spiking}
    readout = np.zeros((count, steps, *network.readout.shape), np.int64)
    incoming = [network.incoming(k) for k in range(len(groups))]
    cache: dict[int, np.ndarray] = {}
    saturated = 0
    for t in range(steps):
        outputs = {INPUT: inputs[:, t] if network.input_spikes else inputs}
        for index, group in enumerate(groups):
            a = sum(graph_synaptic_input(syn, outputs[syn.source], cache)
                    for syn in incoming[index])
            a = np.asarray(a).reshape(count, *group.shape)
            u, v = states[index]
            bias = group.bias.reshape((-1,) + (1,) * (len(group.shape) - 1))
            u = wrap24(decay(u, group.neuron.i_decay) + (a << STATE_SHIFT))
            v = decay(v, group.neuron.v_decay) + u + (bias << STATE_SHIFT)
            saturated += int((np.abs(v) >= STATE_LIMIT).sum())
            v = np.clip(v, -STATE_LIMIT + 1, STATE_LIMIT - 1)
            fired = v > (group.neuron.v_th_mant << STATE_SHIFT)
            if group.spiking:
                spikes[index][:, t] = fired
            if index == len(groups) - 1:
                readout[:, t] = fired if group.spiking else v
            states[index] = (u, np.where(fired, 0, v))
            outputs[index] = fired.astype(np.int64)
    return GraphRun(spikes, readout, saturated)


# ---------------------------------------------------------------- the float model


@dataclass
class FloatGroup:
    """A group of the float network: its neurons (None: readout, relay, max pool) and bias."""

    name: str
    role: str
    shape: tuple[int, ...]
    bias: torch.Tensor             # float per channel
    neuron: NeuronParams | None


@dataclass
class FloatSynapse(HasGeometry):
    name: str
    source: int
    target: int
    geometry: LayerGeometry
    weight: torch.Tensor           # float, BatchNorm and average pools folded in


@dataclass
class FloatGraph:
    groups: list[FloatGroup]
    synapses: list[FloatSynapse]
    input_shape: tuple[int, ...]
    timesteps: int


def run_graph_float(network: FloatGraph, x: torch.Tensor, keep_spikes: bool = True,
                    time_major: bool = False) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The float network on analog ``[N, ...]`` inputs (``time_major``: ``[T, N, ...]``
    spikes): logits ``[T, N, K]`` and, per spiking group, spikes ``[T, N, *shape]``. A relay
    passes its source on unchanged, a max pool is ``F.max_pool2d`` with its synapse's window."""
    from neurokd.data.encoding import repeat_over_time

    steps = network.timesteps
    sequence = x.float() if time_major else repeat_over_time(x.float(), steps)
    outputs = {INPUT: sequence.reshape(-1, *sequence.shape[2:])}     # [T*N, ...]
    spikes: dict[int, np.ndarray] = {}
    last = len(network.groups) - 1
    with torch.no_grad():
        for index, group in enumerate(network.groups):
            fed = [s for s in network.synapses if s.target == index]
            if group.role == "relay":
                value = outputs[fed[0].source]
            elif group.role == "maxpool":
                syn = fed[0]
                value = F.max_pool2d(outputs[syn.source], syn.geometry.kernel, syn.stride,
                                     syn.padding, syn.dilation)
            else:
                value = sum(_float_synapse(syn, outputs[syn.source]) for syn in fed)
                value = value + group.bias.float().reshape(
                    (-1,) + (1,) * (len(group.shape) - 1))
                if group.neuron is not None:
                    seq = neuron_steps(value.reshape(steps, -1, *value.shape[1:]), group.neuron)
                    value = seq.reshape(-1, *seq.shape[2:])
            if group.role != "readout" and keep_spikes:
                spikes[index] = value.reshape(steps, -1, *value.shape[1:]).numpy()
            outputs[index] = value
            for done in [k for k in outputs if k != INPUT and k != index and
                         all(s.source != k or s.target <= index for s in network.synapses)]:
                del outputs[done]    # no later group reads it: free the memory
    out = outputs[last]
    return out.reshape(steps, -1, *out.shape[1:]).numpy(), spikes


def _float_synapse(syn: FloatSynapse, events: torch.Tensor) -> torch.Tensor:
    if syn.kind == "dense":
        return F.linear(events.reshape(len(events), -1), syn.weight.float())
    return F.conv2d(events, syn.weight.float(), None, syn.stride, syn.padding, syn.dilation,
                    syn.groups)
