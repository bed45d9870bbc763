"""A student with residual adds or max pooling as a Loihi graph: neuron groups and synapses.

``build_float_graph`` walks the student's layer records (BatchNorm and average pools folded as
for the chain) and gives the float :class:`~.graph_network.FloatGraph`; ``quantize_graph``
puts it into Loihi's integers (:class:`~.graph_network.GraphNetwork`). What the walk makes:

- a conv / linear feeding a neuron layer is a synapse into that layer's group; a value that is
  a *sum of spike trains* (SEW-ResNet's ``sn(x) + identity``) feeding a conv / linear becomes
  one synapse per train with the same weights, into the same group (the conv is linear);
- a residual add of membrane inputs (neurokd's ``act2(bn2(conv2(...)) + shortcut(x))``) is
  the synapses of both branches into one group; an identity shortcut (spikes added to a
  membrane input) is a depthwise 1x1 synapse of weight 1;
- max pooling of one binary spike train is a ``maxpool`` group (OR over the window); of the
  graded input, of a sum of spike trains (values above 1) or of membrane inputs it is
  refused by name;
- branches that reach a group through different numbers of synapses are aligned with
  ``relay`` groups on the shorter one, shared by every group that needs the same delay
  (one relay group per step of delay per source);
- everything else the chain refuses stays refused, by layer name (``mark_limits``).

Quantization is the chain's (``quantize.py``) per group: one scale per group, set by all the
synapses into it: the largest weight of any of them, the sum of their worst-case inputs in the
24-bit current register, the sum of their biases in 13 bits and the threshold in 17.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from neurokd.student.geometry import LayerGeometry

from ..graph import LayerRecord, StudentGraph, fold_batchnorm
from .fixed_point import (
    DECAY_UNITY,
    MAX_ACTIVATION,
    MAX_BIAS_MANT,
    MAX_THRESHOLD_MANT,
    WEIGHT_MAX,
    WEIGHT_MIN,
    CubaNeuron,
)
from .graph_network import (
    FIXED_NEURON,
    FIXED_WEIGHT,
    INPUT,
    FloatGraph,
    FloatGroup,
    FloatSynapse,
    GraphNetwork,
    GraphSynapse,
    NeuronGroup,
    graph_problems,
)
from .pool_fold import fold_average_pools, pair

GRAPH_KINDS = ("conv", "dense", "flatten", "neuron", "add", "maxpool")


def mark_limits(graph: StudentGraph, record: LayerRecord, graphs: bool) -> LayerRecord:
    """``record`` as ``unsupported`` with the reason when Loihi cannot take it: in a chain
    (netx, ``graphs=False``: no adds, no pooling) or in neurokd's graph file."""
    reason = ""
    if record.kind == "add" and not graphs:
        reason = "residual addition: netx holds a chain of layers, no shortcuts"
    elif record.kind == "maxpool" and graphs:
        reason = _maxpool_limit(record.module)
    elif record.kind == "avgpool" or (record.kind == "maxpool" and not graphs):
        reason = (f"{type(record.module).__name__}: netx has no pooling layer and only "
                  "non-overlapping average pools before a conv/linear fold; use a strided conv"
                  if not graphs else f"{type(record.module).__name__}: only average pools "
                  "with even, non-overlapping windows before a conv/linear fold (Loihi has no "
                  "averaging neuron)")
    elif record.kind == "neuron" and record.neuron.model not in ("lif", "if"):
        reason = (f"{type(record.module).__name__}: neurokd writes Loihi's CUBA neuron without "
                  "current memory (iDecay 4096), so only LIF and IF map onto it")
    elif record.kind == "neuron" and record.neuron.reset == "soft":
        reason = "soft reset: Loihi's CUBA neuron resets v to 0"
    elif record.kind == "neuron" and record.neuron.v_reset != 0.0:
        reason = f"v_reset={record.neuron.v_reset:g}: Loihi resets v to 0"
    elif record.kind == "conv" and not isinstance(record.module, nn.Conv2d):
        reason = f"{type(record.module).__name__}: netx convolutions are 2-D"
    elif record.kind == "conv" and record.module.padding_mode != "zeros":
        reason = f"padding_mode={record.module.padding_mode!r}: netx pads with zeros"
    elif record.kind == "flatten" and graph.consumers(record.name) and \
            graph.consumers(record.name)[0].kind != "dense":
        reason = "flatten not followed by a linear layer"
    return replace(record, kind="unsupported", reason=reason) if reason else record


def _maxpool_limit(module: nn.Module) -> str:
    if not isinstance(module, nn.MaxPool2d):
        return f"{type(module).__name__}: Loihi's max pool is 2-D"
    if module.ceil_mode:
        return "MaxPool2d with ceil_mode: windows past the edge are not expressed"
    if module.return_indices:
        return "MaxPool2d returning indices"
    return ""


@dataclass(frozen=True)
class _Spikes:
    """A value that is spikes: the sum of the spike trains of ``sources`` (group names, or
    "input" for the graded input), each of shape ``shape`` (``flat``: seen flattened)."""

    sources: tuple[str, ...]
    shape: tuple[int, ...]
    flat: bool = False


@dataclass(frozen=True)
class _Term:
    """One synaptic input of a membrane: ``module``'s weights on the spikes ``spikes``
    (``module`` None: the identity, weight 1 per channel)."""

    name: str
    module: nn.Module | None
    spikes: _Spikes


@dataclass(frozen=True)
class _Current:
    terms: tuple[_Term, ...]
    shape: tuple[int, ...]


@dataclass
class _Pending:
    """A group before time alignment: its terms, each of one source."""

    group: FloatGroup
    terms: list[tuple[str, _Term]]        # (source name, term)
    pool: nn.Module | None = None         # max pool


def build_float_graph(graph: StudentGraph) -> tuple[FloatGraph | None, list[str], list[str]]:
    """The float graph of ``graph``, the average pools folded into it, and what Loihi cannot
    take (``"layer (reason)"``, empty when the graph is returned)."""
    folded, pools = fold_average_pools(fold_batchnorm(graph))
    folded.records = [mark_limits(folded, r, graphs=True) for r in folded.records]
    problems = folded.offending(GRAPH_KINDS)
    if problems:
        return None, pools, problems
    pending, problems = _walk(folded)
    if problems:
        return None, pools, problems
    float_graph, problems = _align(pending, folded.input_shape, folded.timesteps)
    if not problems:
        problems = graph_problems(float_graph)
    return (None if problems else float_graph), pools, problems


def _walk(graph: StudentGraph) -> tuple[list[_Pending], list[str]]:
    values: dict[str, _Spikes | _Current] = {"input": _Spikes(("input",), graph.input_shape)}
    pending: list[_Pending] = []
    problems: list[str] = []
    # a neuron layer's group is named by its layer (neurokd.student.layers): the conv before it
    labels = dict(zip((r.name for r in graph.neurons), graph.spike_labels(), strict=True))
    for record in graph.records[1:]:
        ins = [values.get(name) for name in record.inputs]
        if any(value is None for value in ins):
            continue  # after a layer already refused
        value, problem = _step(record, ins, pending, labels.get(record.name, record.name))
        if problem:
            problems.append(f"{record.name} ({problem})")
        elif value is not None:
            values[record.name] = value
    return pending, problems


def _step(record: LayerRecord, ins: list, pending: list[_Pending], label: str):
    """The value ``record`` gives, or why it cannot be expressed (``label``: a neuron
    layer's group name)."""
    kind, first = record.kind, ins[0]
    shape = tuple(record.output_shape)
    if kind in ("conv", "dense"):
        if isinstance(first, _Current):
            return None, "no neurons between it and the synaptic layer before it"
        if kind == "dense" and len(first.shape) != 1:
            return None, f"linear on a {len(first.shape)}-D input: flatten before it"
        return _Current((_Term(record.name, record.module, first),), shape), ""
    if kind == "flatten":
        if isinstance(first, _Current):
            return None, "flatten of membrane inputs"
        return replace(first, shape=shape, flat=True), ""
    if kind == "neuron":
        if not isinstance(first, _Current):
            return None, "a neuron layer without a conv/linear before it"
        group = FloatGroup(label, "layer", shape, _bias_sum(first.terms), record.neuron)
        pending.append(_Pending(group, _per_source(first.terms)))
        return _Spikes((label,), shape), ""
    if kind == "add":
        return _add(ins, shape)
    if kind == "maxpool":
        if isinstance(first, _Current):
            return None, "max pooling of membrane inputs: only binary spikes pool as an OR"
        if first.sources == ("input",):
            return None, "max pooling of the graded input: only binary spikes pool as an OR"
        if len(first.sources) != 1 or first.flat:
            return None, "max pooling of a sum of spike trains (values above 1 are no OR)"
        source = first.sources[0]
        name = record.name
        empty = torch.zeros(shape[0], dtype=torch.float64)
        pending.append(_Pending(FloatGroup(name, "maxpool", shape, empty, None),
                                [(source, _Term(name, None, first))], record.module))
        return _Spikes((name,), shape), ""
    if kind == "output":
        if isinstance(first, _Current):
            empty = FloatGroup(record.inputs[0], "readout", first.shape,
                               _bias_sum(first.terms), None)
            pending.append(_Pending(empty, _per_source(first.terms)))
            return None, ""
        if len(first.sources) != 1 or first.sources == ("input",) or \
                first.sources[0] != pending[-1].group.name:
            return None, "the output is not one neuron layer or a linear readout"
        return None, ""
    return None, record.reason or kind


def _add(ins: list, shape: tuple[int, ...]):
    a, b = ins
    if isinstance(a, _Spikes) and isinstance(b, _Spikes):
        if a.shape != b.shape or a.flat != b.flat:
            return None, "adds spike trains of different shapes"
        if "input" in a.sources + b.sources:
            return None, "adds the graded input to spikes"
        return _Spikes(a.sources + b.sources, shape, a.flat), ""
    if isinstance(a, _Current) and isinstance(b, _Current):
        return _Current(a.terms + b.terms, shape), ""
    current, spikes = (a, b) if isinstance(a, _Current) else (b, a)
    if spikes.shape != current.shape or spikes.flat or "input" in spikes.sources:
        return None, "adds spikes to a membrane input of another shape (or the graded input)"
    return _Current(current.terms + (_Term(f"{_name(spikes)}+identity", None, spikes),),
                    shape), ""


def _name(spikes: _Spikes) -> str:
    return "+".join(spikes.sources)


def _per_source(terms: tuple[_Term, ...]) -> list[tuple[str, _Term]]:
    """One (source, term) per spike train: a term on a sum of trains is one synapse each."""
    return [(source, term) for term in terms for source in term.spikes.sources]


def _bias_sum(terms: tuple[_Term, ...]) -> torch.Tensor:
    """The group's bias: each layer's once, however many spike trains it is split over."""
    total = None
    for term in terms:
        bias = getattr(term.module, "bias", None) if term.module is not None else None
        if bias is not None:
            bias = bias.detach().double()
            total = bias if total is None else total + bias
    if total is None:
        first = terms[0]
        channels = (first.module.weight.shape[0] if first.module is not None
                    else first.spikes.shape[0])
        total = torch.zeros(channels, dtype=torch.float64)
    return total


def _align(pending: list[_Pending], input_shape: tuple[int, ...],
           timesteps: int) -> tuple[FloatGraph, list[str]]:
    """Groups in order with relay groups where branches of unequal depth meet, and one
    synapse per (term, source)."""
    groups: list[FloatGroup] = []
    synapses: list[FloatSynapse] = []
    index: dict[str, int] = {"input": INPUT}
    depth: dict[str, int] = {"input": 0}
    problems: list[str] = []
    shapes = {"input": tuple(input_shape)}

    def at_depth(source: str, wanted: int) -> str:
        if depth[source] == wanted:
            return source
        if source == "input":
            raise _Unaligned
        before = at_depth(source, wanted - 1)
        name = f"{source}@relay{wanted - depth[source]}"
        if name not in index:
            shape = shapes[source]
            groups.append(FloatGroup(name, "relay", shape, torch.zeros(shape[0]), None))
            index[name], depth[name], shapes[name] = len(groups) - 1, wanted, shape
            synapses.append(FloatSynapse(f"{name}<-{before}", index[before], index[name],
                                         identity_geometry(shape), identity_weight(shape)))
        return name

    for item in pending:
        group = item.group
        if any(source not in depth for source, _ in item.terms):
            continue  # downstream of a group already refused
        wanted = max(depth[source] for source, _ in item.terms)
        try:
            sources = [at_depth(source, wanted) for source, _ in item.terms]
        except _Unaligned:
            problems.append(f"{group.name} (the input reaches it through different numbers "
                            "of layers: relays copy the spikes of neuron groups, not the input)")
            continue
        groups.append(group)
        index[group.name], depth[group.name] = len(groups) - 1, wanted + 1
        shapes[group.name] = group.shape
        for source, (_, term) in zip(sources, item.terms, strict=True):
            geometry, weight = _synapse_of(term, shapes[source], group.shape, item.pool)
            synapses.append(FloatSynapse(term.name, index[source], index[group.name], geometry,
                                         weight))
    return FloatGraph(groups, synapses, tuple(input_shape), timesteps), problems


class _Unaligned(Exception):
    """The input would need a relay: relays are neuron groups copying a group's spikes."""


def identity_geometry(shape: tuple[int, ...]) -> LayerGeometry:
    """One weight per neuron onto the neuron in the same place: a depthwise 1x1 conv (C,H,W)
    or a diagonal dense synapse ``(N,)``."""
    if len(shape) == 3:
        return LayerGeometry("conv", tuple(shape), shape[0], 1, groups=shape[0])
    return LayerGeometry("dense", (math.prod(shape),), math.prod(shape), math.prod(shape))


def identity_weight(shape: tuple[int, ...]) -> torch.Tensor:
    if len(shape) == 3:
        return torch.ones(shape[0], 1, 1, 1, dtype=torch.float64)
    return torch.eye(math.prod(shape), dtype=torch.float64)


def _synapse_of(term: _Term, source_shape: tuple[int, ...], target_shape: tuple[int, ...],
                pool: nn.Module | None) -> tuple[LayerGeometry, torch.Tensor]:
    if pool is not None:
        channels = source_shape[0]
        kernel = pair(pool.kernel_size)
        geometry = LayerGeometry("conv", tuple(source_shape), channels, 1, kernel,
                                 pair(pool.stride or pool.kernel_size), pair(pool.padding),
                                 pair(pool.dilation), channels)
        return geometry, torch.ones(channels, 1, *kernel, dtype=torch.float64)
    if term.module is None:
        return identity_geometry(target_shape), identity_weight(target_shape)
    flat = (math.prod(source_shape),)
    geometry = LayerGeometry.of_module(term.name, term.module,
                                       flat if isinstance(term.module, nn.Linear)
                                       else tuple(source_shape))
    return geometry, term.module.weight.detach().double()


# ---------------------------------------------------------------- quantization


def quantize_graph(graph: FloatGraph, calibration: torch.Tensor,
                   spikes: bool = False) -> GraphNetwork:
    """Loihi's integers for ``graph``: one scale per group (module docstring); analog
    ``calibration`` inputs ``[N, ...]`` set the graded input's range, spikes need none."""
    first = next(k for k, g in enumerate(graph.groups)
                 if any(s.source == INPUT and s.target == k for s in graph.synapses))
    if spikes:
        input_scale, top, signed = 1.0, 1, False
    else:
        x = calibration.numpy().astype(np.float64)
        signed = bool(x.min() < 0)
        peak = float(np.abs(x).max()) or 1.0
        input_scale = _input_scale(graph, first, peak, 127 if signed else 255)
        top = int(round(peak * input_scale))
    groups: list[NeuronGroup] = []
    synapses: list[GraphSynapse] = []
    for k, group in enumerate(graph.groups):
        fed = [s for s in graph.synapses if s.target == k]
        if group.role in ("relay", "maxpool"):
            groups.append(NeuronGroup(group.name, group.role, group.shape,
                                      np.zeros(group.shape[0], np.int64), FIXED_NEURON))
            synapses += [GraphSynapse(s.name, s.source, k, s.geometry,
                                      FIXED_WEIGHT * s.weight.round().long().numpy())
                         for s in fed]
            continue
        ins = [(input_scale, top) if s.source == INPUT else (1.0, 1) for s in fed]
        quantized, weights = _quantize_group(group, fed, ins)
        groups.append(quantized)
        synapses += [GraphSynapse(s.name, s.source, k, s.geometry, w)
                     for s, w in zip(fed, weights, strict=True)]
    return GraphNetwork(groups, synapses, graph.input_shape, graph.timesteps, input_scale,
                        -top if signed else 0, top, spikes)


def _gain(params) -> float:
    """The factor spikingjelly puts on the input current: 1/tau with ``decay_input``."""
    return 1.0 / params.tau if params and params.model == "lif" and params.decay_input else 1.0


def _per_channel(weight: np.ndarray) -> np.ndarray:
    return np.abs(weight).reshape(len(weight), -1).sum(1)


def _limits(group: FloatGroup, fed: list[FloatSynapse],
            ins: list[tuple[float, float]]) -> dict[str, float]:
    """Upper bounds on the group's scale, one per Loihi register it must fit."""
    gain, params = _gain(group.neuron), group.neuron
    bias = group.bias.double().numpy()
    largest = max(float(np.abs(s.weight.numpy()).max()) / scale for s, (scale, _) in
                  zip(fed, ins, strict=True))
    fan_in = sum(_per_channel(s.weight.numpy()) * peak / scale
                 for s, (scale, peak) in zip(fed, ins, strict=True))
    limits = {
        "weights": WEIGHT_MAX / (gain * largest or 1.0),
        "bias": MAX_BIAS_MANT / (gain * np.abs(bias).max() or 1e-30),
        "activation": 0.97 * MAX_ACTIVATION / (
            gain * float((fan_in + (0 if params else np.abs(bias))).max()) or 1e-30)}
    if params:
        limits["threshold"] = MAX_THRESHOLD_MANT / params.v_threshold
    return limits


def _input_scale(graph: FloatGraph, first: int, peak: float, top: int) -> float:
    """Graded input levels per unit of x, as the chain's ``quantize._input_scale``: the first
    group's precision split evenly between input levels and weight levels."""
    group = graph.groups[first]
    fed = [s for s in graph.synapses if s.target == first]
    limits = _limits(group, fed, [(1.0, peak)] * len(fed))
    limits.pop("weights")
    largest = max(float(np.abs(s.weight.numpy()).max()) for s in fed) or 1.0
    weight_span = min(limits.values()) * _gain(group.neuron) * largest
    balanced = math.sqrt(weight_span / peak)
    return float(min(top / peak, max(balanced, weight_span / WEIGHT_MAX)))


def _quantize_group(group: FloatGroup, fed: list[FloatSynapse],
                    ins: list[tuple[float, float]]) -> tuple[NeuronGroup, list[np.ndarray]]:
    from neurokd.errors import NeuroKDError

    params, gain = group.neuron, _gain(group.neuron)
    bias = group.bias.double().numpy()
    limits = _limits(group, fed, ins)
    binding = min(limits, key=limits.get)
    scale, shrunk = limits[binding], False
    while True:
        threshold = math.floor(params.v_threshold * scale) if params else MAX_THRESHOLD_MANT
        if params:
            scale = threshold / params.v_threshold  # the threshold is then exact
        raws = [scale * gain * s.weight.numpy() / in_scale for s, (in_scale, _) in
                zip(fed, ins, strict=True)]
        ints = [np.clip(2 * np.rint(raw / 2), WEIGHT_MIN, WEIGHT_MAX).astype(np.int64)
                for raw in raws]
        b_int = np.clip(np.rint(scale * gain * bias), -MAX_BIAS_MANT,
                        MAX_BIAS_MANT).astype(np.int64)
        worst = sum(_per_channel(w) * peak for w, (_, peak) in zip(ints, ins, strict=True))
        worst = worst + (0 if params else np.abs(b_int))
        if worst.max() <= MAX_ACTIVATION or scale < 1e-6:
            break
        scale *= 0.95  # integer rounding pushed a sum over the limit: shrink a little
        shrunk = True
    if shrunk:
        binding = "activation"
    if params is not None and threshold < 1:
        raise NeuroKDError(f"cannot export to Loihi: {group.name} needs a threshold below one "
                           "integer step at 8-bit weights; its weights or bias are too large "
                           "next to v_threshold")
    v_decay = 0 if not params or params.model == "if" else round(DECAY_UNITY / params.tau)
    cuba = CubaNeuron(DECAY_UNITY, v_decay if params else DECAY_UNITY, threshold)
    all_raw = np.concatenate([r.ravel() for r in raws])
    all_float = np.concatenate([s.weight.numpy().ravel() for s in fed])
    all_int = np.concatenate([w.ravel() for w in ints])
    quantization = {"weight_range": (float(all_float.min()), float(all_float.max())),
                    "int_range": (int(all_int.min()), int(all_int.max())),
                    "clipped": float((np.abs(all_raw) > WEIGHT_MAX + 1).mean()),
                    "bias_clipped": float((np.abs(scale * gain * bias) > MAX_BIAS_MANT + 0.5)
                                          .mean()),
                    "limit": binding, "threshold_mant": threshold if params else None,
                    "kind": _kinds(fed)}
    role = "layer" if params is not None else "readout"
    return (NeuronGroup(group.name, role, group.shape, b_int, cuba, float(scale), quantization),
            ints)


def _kinds(fed: list[FloatSynapse]) -> str:
    kinds = [s.kind for s in fed]
    if len(set(kinds)) == 1:
        return kinds[0] + (f" x{len(kinds)}" if len(kinds) > 1 else "")
    return "+".join(kinds)
