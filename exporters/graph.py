"""A spiking student as a flat list of layer records, shared by the exporters.

``trace_student`` walks a multi-step spikingjelly model (a neurokd student, a user's model
wrapped by ``neurokd.data.encoding.DirectEncoding``, or any module taking ``[T, B, ...]``) with
``torch.fx`` and returns a :class:`StudentGraph`: one :class:`LayerRecord` per layer in
execution order, each naming its inputs, so chains and residual additions are both plain data.
Every record carries its per-sample shapes (no T or B axis) and, for neurons, their
parameters (``neurons.py``). Layers the walker does not understand become records of kind
``"unsupported"`` with the reason rather than errors, because what an exporter can represent
differs per target: ``StudentGraph.require(kinds, target)`` raises one :class:`NeuroKDError`
naming all of them.

spikingjelly's model zoo needs a few more forms, all exact in eval mode: ``layer.Dropout`` /
``nn.Dropout`` / ``nn.Identity`` are identities; ``torch.flatten(x, d)`` / ``x.flatten(d)`` in a
``forward`` are flatten layers (their dims counted on the multi-step ``[T, B, ...]`` tensor);
``out += identity`` is an addition; ``layer.VotingLayer`` (the mean over each group of
``voting_size`` outputs) is a fixed linear layer.

:class:`GraphExecutor` runs the records with plain PyTorch ops only (the neuron loop written
out over T), which is what the ONNX exporter traces and what checks the records against the
model they came from. ``fold_batchnorm`` merges BatchNorm into the conv/linear before it (NIR
and Loihi have no BatchNorm).
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass, field, replace

import torch
import torch.fx as fx
from spikingjelly.activation_based import base, layer, neuron
from torch import nn

from neurokd.data.encoding import time_major, unwrap_encoding
from neurokd.errors import NeuroKDError
from neurokd.student.layers import neuron_layers, spike_labels
from neurokd.text import first_line

from .export_memory import require_memory
from .neurons import NeuronParams, neuron_params, neuron_step, neuron_steps
from .zoo_layers import VotingLinear, functional_flatten

# Record kinds. "input"/"output" bracket the list; "add" sums its inputs (residual shortcuts).
KINDS = ("input", "conv", "dense", "batchnorm", "flatten", "avgpool", "maxpool", "neuron",
         "add", "output", "unsupported")
_MODULE_KINDS: tuple[tuple[type, str], ...] = (
    ((nn.Conv1d, nn.Conv2d), "conv"), ((nn.Linear,), "dense"),
    ((nn.BatchNorm1d, nn.BatchNorm2d), "batchnorm"), ((nn.Flatten,), "flatten"),
    ((nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d), "avgpool"),
    ((nn.MaxPool1d, nn.MaxPool2d), "maxpool"))
# Modules that compute nothing in eval mode: consumers are wired straight to their input.
# (spikingjelly's Dropout keeps its mask as state, but only applies it in training.)
_PASS_THROUGH = (nn.Identity, nn.Dropout, layer.Dropout)
_ADDS = (operator.add, operator.iadd, torch.add)
_FLATTENS = (torch.flatten, "flatten")  # torch.flatten(x, ...) and x.flatten(...)


@dataclass
class LayerRecord:
    """One layer: ``name`` is its module path in the model (function nodes: the fx node name)."""

    name: str
    kind: str
    inputs: tuple[str, ...] = ()
    module: nn.Module | None = None
    neuron: NeuronParams | None = None
    input_shape: tuple[int, ...] = ()   # per sample and timestep: no T or B axis
    output_shape: tuple[int, ...] = ()
    reason: str = ""  # why a record is "unsupported"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown layer kind {self.kind!r}")


@dataclass
class StudentGraph:
    """Records in execution order (``records[0]`` is the input, ``records[-1]`` the output)."""

    records: list[LayerRecord]
    input_shape: tuple[int, ...]
    timesteps: int
    _index: dict[str, LayerRecord] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index = {r.name: r for r in self.records}
        if len(self._index) != len(self.records):
            raise ValueError("layer record names must be unique")

    def __getitem__(self, name: str) -> LayerRecord:
        return self._index[name]

    def consumers(self, name: str) -> list[LayerRecord]:
        return [r for r in self.records if name in r.inputs]

    @property
    def neurons(self) -> list[LayerRecord]:
        return [r for r in self.records if r.kind == "neuron"]

    @property
    def layer_names(self) -> list[str]:
        """The synaptic (conv/dense) records' names in order: the layers' names."""
        return [r.name for r in self.records if r.kind in ("conv", "dense")]

    def neuron_layers(self) -> dict[str, str]:
        """``{neuron record: its layer}`` by ``neurokd.student.layers`` (the conv/dense record
        last before it)."""
        return neuron_layers((r.name, r.kind != "neuron") for r in self.records
                             if r.kind in ("conv", "dense", "neuron"))

    def spike_labels(self) -> list[str]:
        """Per neuron record (in :attr:`neurons` order) the name its spikes are shown under:
        its layer's, or its own where the layer has several neuron records."""
        labels = spike_labels(self.neuron_layers())
        return [labels[r.name] for r in self.neurons]

    def offending(self, kinds: set[str] | tuple[str, ...]) -> list[str]:
        """``"name (reason)"`` for every record whose kind is not in ``kinds``."""
        allowed = set(kinds) | {"input", "output"}
        return [f"{r.name} ({r.reason or r.kind})" for r in self.records if r.kind not in allowed]

    def require(self, kinds: set[str] | tuple[str, ...], target: str) -> None:
        self.refuse(self.offending(kinds), target)

    @staticmethod
    def refuse(problems: list[str], target: str) -> None:
        """One error naming every layer a target cannot take (nothing when there are none)."""
        if problems:
            raise NeuroKDError(f"cannot export to {target}: unsupported layers: "
                               f"{'; '.join(problems)}")


def multistep_body(model: nn.Module) -> tuple[nn.Module, str]:
    """The part of ``model`` that takes ``[T, B, ...]``, and how it is reached from ``model``.

    Built-in students repeat static input inside ``forward`` (a branch on ``x.dim()`` that fx
    cannot trace) and put the multi-step network in ``body``; ``DirectEncoding`` wraps a
    user's multi-step model as ``.model``. Anything else is taken as multi-step already.
    """
    inner = unwrap_encoding(model)
    if inner is not model:
        return inner, "model"
    if callable(getattr(model, "body", None)):
        return _BodyCall(model), "body"
    return model, ""


class _BodyCall(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.m = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m.body(x)


class _Tracer(fx.Tracer):
    """Stops at layers (anything without children, and neurons); opens SeqToANN containers.

    Nodes traced inside a SeqToANN container see ``[T*B, ...]`` tensors, the others
    ``[T, B, ...]``: ``node.meta["time_merged"]`` says which, for functional flattens.
    """

    def __init__(self) -> None:
        super().__init__()
        self._merged = 0

    def create_node(self, *args, **kwargs):
        node = super().create_node(*args, **kwargs)
        node.meta["time_merged"] = self._merged > 0
        return node

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, nn.Sequential | nn.ModuleList | nn.ModuleDict):
            return False  # containers (an empty Sequential is an identity shortcut)
        return isinstance(m, base.MemoryModule) or not any(True for _ in m.children())

    def call_module(self, m, forward, args, kwargs):
        if isinstance(m, layer.SeqToANNContainer) and len(args) == 1 and not kwargs:
            # Its children see [T*B, ...], which is how the records treat every layer anyway.
            out = args[0]
            self._merged += 1
            try:
                for child in m:
                    out = self.call_module(child, child.forward, (out,), {})
            finally:
                self._merged -= 1
            return out
        return super().call_module(m, forward, args, kwargs)


def trace_student(model: nn.Module, input_shape: tuple[int, ...], timesteps: int,
                  batch_size: int = 64) -> StudentGraph:
    """Records of ``model`` (eval mode), with shapes from one forward pass of the records.

    Refuses up front (naming the size) when exporting it would need more memory than the
    machine has, ``batch_size`` being the largest batch the export checks run."""
    body, prefix = multistep_body(model)
    try:
        fx_graph = _Tracer().trace(body)
    except Exception as exc:  # noqa: BLE001 - fx raises many types for untraceable Python
        raise NeuroKDError(f"cannot walk the model's layers with torch.fx ({type(exc).__name__}: "
                           f"{first_line(exc)}); exporters need a "
                           "forward made of layer calls and additions") from None
    strip = "m." if prefix == "body" else ""
    records = _records_from_fx(fx_graph, body, strip)
    graph = StudentGraph(records, tuple(input_shape), int(timesteps))
    require_memory(graph.records, graph.timesteps, batch_size)  # the weights, before a run
    if not graph.offending(KINDS[:-1]):
        _infer_shapes(graph)
        require_memory(graph.records, graph.timesteps, batch_size)  # now with activations
    return graph


def _records_from_fx(fx_graph: fx.Graph, root: nn.Module, strip: str) -> list[LayerRecord]:
    records: list[LayerRecord] = []
    alias: dict[str, str] = {}  # fx node name -> record name (pass-through layers removed)
    calls: dict[str, int] = {}
    for node in fx_graph.nodes:
        args = [alias.get(a.name, a.name) for a in node.all_input_nodes]
        if node.op == "placeholder":
            if records:
                alias[node.name] = node.name
                records.append(LayerRecord(node.name, "unsupported", (), reason="second input"))
                continue
            alias[node.name] = "input"
            records.append(LayerRecord("input", "input"))
        elif node.op == "output":
            single = len(args) == 1 and isinstance(node.args[0], fx.Node)
            records.append(LayerRecord("output", "output" if single else "unsupported",
                                       tuple(args), reason="" if single else "several outputs"))
        elif node.op == "call_module":
            name = node.target[len(strip):] if node.target.startswith(strip) else node.target
            module = root.get_submodule(node.target)
            calls[name] = calls.get(name, 0) + 1
            if isinstance(module, _PASS_THROUGH) and len(args) == 1:
                alias[node.name] = args[0]
                continue
            record = _module_record(name, module, tuple(args))
            if calls[name] > 1:
                name = f"{name}#{calls[name]}"
                record = replace(record, name=name, kind="unsupported",
                                 reason="called more than once")
            alias[node.name] = name
            records.append(record)
        else:
            alias[node.name] = node.name
            records.append(_function_record(node, tuple(args)))
    return records


def _module_record(name: str, module: nn.Module, inputs: tuple[str, ...]) -> LayerRecord:
    if isinstance(module, neuron.BaseNode):
        params = neuron_params(module)
        if isinstance(params, str):
            return LayerRecord(name, "unsupported", inputs, module, reason=params)
        return LayerRecord(name, "neuron", inputs, module, params)
    if isinstance(module, base.MemoryModule):
        return LayerRecord(name, "unsupported", inputs, module,
                           reason=f"{type(module).__name__}: stateful layer without an exporter")
    if isinstance(module, layer.VotingLayer):
        return LayerRecord(name, "dense", inputs, VotingLinear(module.voting_size))
    for types, kind in _MODULE_KINDS:
        if not isinstance(module, types) or _torch_base(module) is None:
            continue
        if kind == "batchnorm" and module.training:  # batch statistics: nothing fixed to export
            return LayerRecord(name, "unsupported", inputs, module, reason="BatchNorm in train mode")
        return LayerRecord(name, kind, inputs, module)
    return LayerRecord(name, "unsupported", inputs, module,
                       reason=f"{type(module).__name__}: a layer type no exporter knows")


def _function_record(node: fx.Node, inputs: tuple[str, ...]) -> LayerRecord:
    is_add = node.op == "call_function" and node.target in _ADDS
    if is_add and len(inputs) == 2 and len(node.args) == 2 and not node.kwargs:
        return LayerRecord(node.name, "add", inputs)
    if node.op in ("call_function", "call_method") and node.target in _FLATTENS \
            and len(inputs) == 1:
        return _flatten_record(node, inputs)
    target = getattr(node.target, "__name__", str(node.target))
    return LayerRecord(node.name, "unsupported", inputs,
                       reason=f"{node.op} {target}: only layer calls, additions and flattens "
                       "are exported")


def _flatten_record(node: fx.Node, inputs: tuple[str, ...]) -> LayerRecord:
    layer_or_reason = functional_flatten(node.args[1:], node.kwargs,
                                         bool(node.meta.get("time_merged")))
    if isinstance(layer_or_reason, str):
        return LayerRecord(node.name, "unsupported", inputs, reason=layer_or_reason)
    return LayerRecord(node.name, "flatten", inputs, layer_or_reason)


def _apply(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One stateless layer on ``[T*B, ...]``, through the torch forward it wraps."""
    if isinstance(module, VotingLinear) and module.in_features != x.shape[-1]:
        module.fit(int(x.shape[-1]))
    return _torch_base(module).forward(module, x)


def _torch_base(module: nn.Module) -> type | None:
    """The torch.nn class whose forward is this layer's per-timestep math, if there is one.

    spikingjelly's ``layer.Conv2d`` etc. only add the T axis around the torch forward; any other
    subclass that overrides ``forward`` (weight standardisation, ...) computes something else.
    """
    for cls in type(module).__mro__:
        if cls.__module__.startswith("torch.nn.modules") and "forward" in vars(cls):
            return cls
        wrapper = cls.__module__.startswith("spikingjelly.activation_based.layer")
        if "forward" in vars(cls) and not (wrapper and _same_name_base(cls)):
            return None
    return None


def _same_name_base(cls: type) -> bool:
    return any(b.__name__ == cls.__name__ and b.__module__.startswith("torch.nn.modules")
               for b in cls.__bases__)


def _infer_shapes(graph: StudentGraph) -> None:
    sample = torch.zeros(graph.timesteps, 2, *graph.input_shape)
    try:
        with torch.no_grad():
            GraphExecutor(graph, record_shapes=True)(sample)
    except RuntimeError as exc:  # a layer that does not act per sample and timestep
        raise NeuroKDError("the model's layers do not run one timestep at a time on "
                           f"[T*B, ...] tensors: {first_line(exc)}") from None


class GraphExecutor(nn.Module):
    """Runs a :class:`StudentGraph` with plain torch ops; output ``(logits [T,B,...], spikes)``.

    Stateless layers see ``[T*B, ...]`` (as spikingjelly's multi-step wrappers do, so the
    arithmetic is the same); neurons unroll over T with the equations of :class:`NeuronParams`,
    which exports to ONNX as Add/Sub/Div/GreaterOrEqual/Where. ``spikes`` holds one
    ``[T, B, ...]`` tensor per neuron record, in record order.
    """

    def __init__(self, graph: StudentGraph, record_shapes: bool = False):
        super().__init__()
        self.graph = graph
        self.record_shapes = record_shapes
        self.layers = nn.ModuleList(r.module for r in graph.records if _computes(r))
        self._slot = {r.name: i for i, r in enumerate(r for r in graph.records if _computes(r))}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        steps = self.graph.timesteps
        x = time_major(x, self.graph.input_shape, steps)
        spikes: list[torch.Tensor] = []

        def neurons(record: LayerRecord, value: torch.Tensor) -> torch.Tensor:
            seq = value.reshape(steps, -1, *value.shape[1:])
            spike_seq = neuron_steps(seq, record.neuron)
            spikes.append(spike_seq)
            return spike_seq.reshape(-1, *spike_seq.shape[2:])

        out = self._walk(x.reshape(-1, *x.shape[2:]), neurons)
        return out.reshape(steps, -1, *out.shape[1:]), spikes

    def _walk(self, x: torch.Tensor, neurons) -> torch.Tensor:
        """The records on ``x`` (``[N, ...]`` frames); ``neurons(record, input)`` runs each
        neuron layer (over T, or one step with state: :class:`StepExecutor`)."""
        values = {"input": x}
        out = x
        for record in self.graph.records[1:]:
            ins = [values[name] for name in record.inputs]
            if record.kind == "output":
                out = ins[0]
                break
            if record.kind == "add":
                value = ins[0] + ins[1]
            elif record.kind == "neuron":
                value = neurons(record, ins[0])
            else:
                module = self.layers[self._slot[record.name]]
                value = _apply(module, ins[0])
            if self.record_shapes:
                record.input_shape = tuple(ins[0].shape[1:])
                record.output_shape = tuple(value.shape[1:])
            values[record.name] = value
        return out


class StepExecutor(GraphExecutor):
    """One timestep of a :class:`StudentGraph`, the neurons' state passed in and out:
    ``(x [B, ...], *states) -> (logits [B, K], *new states, *spikes [B, ...])``.

    ``x`` is the timestep's input: the static sample (direct encoding repeats it, so every
    step gets the same ``x``) or one frame of ``[T, B, ...]`` spikes. One state per neuron
    layer (:meth:`state_names`; two for ``cubalif``: membrane and current), each shaped like
    the layer's output, zeros at t = 1: the membrane is kept relative to its resting value
    (``v - v_reset``), so the initial state is zeros for every reset. Stepping it T times
    gives exactly the rows of :class:`GraphExecutor` (the same ops in the same order).

        >>> # step = StepExecutor(graph); states = step.initial_states(batch=1)
        >>> # for t in range(T): logits, *states = step(x[t], *states)[:1 + len(states)]
    """

    def state_names(self) -> list[str]:
        """``LAYER.v`` (and ``LAYER.i``) per neuron record, named as its spikes are
        (:meth:`StudentGraph.spike_labels`)."""
        return [f"{label}.{part}" for r, label in zip(self.graph.neurons,
                                                      self.graph.spike_labels(), strict=True)
                for part in _state_parts(r)]

    def state_shapes(self) -> list[tuple[int, ...]]:
        """Per-sample shapes (no batch axis) of the states, in :meth:`state_names` order."""
        return [tuple(r.output_shape) for r in self.graph.neurons for _ in _state_parts(r)]

    def initial_states(self, batch: int) -> list[torch.Tensor]:
        return [torch.zeros(batch, *shape) for shape in self.state_shapes()]

    def forward(self, x: torch.Tensor, *states: torch.Tensor):
        given = iter(states)
        new_states: list[torch.Tensor] = []
        spikes: list[torch.Tensor] = []

        def neurons(record: LayerRecord, value: torch.Tensor) -> torch.Tensor:
            params = record.neuron
            rest = params.v_initial
            v = next(given)
            v = v + rest if rest else v  # a zero offset adds no op (and no rounding)
            # Only cubalif reads a current; the others get v as a stand-in, since a zeros_like
            # here would put Shape/ConstantOfShape ops in every step of the file for nothing.
            current = next(given) if params.model == "cubalif" else v
            spike, v, current = neuron_step(value, v, current, params)
            new_states.append(v - rest if rest else v)
            if params.model == "cubalif":
                new_states.append(current)
            spikes.append(spike)
            return spike

        logits = self._walk(x, neurons)
        return (logits, *new_states, *spikes)


def _state_parts(record: LayerRecord) -> tuple[str, ...]:
    return ("v", "i") if record.neuron.model == "cubalif" else ("v",)


def _computes(record: LayerRecord) -> bool:
    return record.module is not None and record.kind not in ("neuron", "unsupported")


def fold_batchnorm(graph: StudentGraph) -> StudentGraph:
    """A copy where each BatchNorm is merged into the conv/linear feeding only it.

    BatchNorm after anything else becomes ``unsupported`` (nothing to merge it into).
    """
    records = [copy.copy(r) for r in graph.records]
    by_name = {r.name: r for r in records}
    renamed: dict[str, str] = {}
    kept: list[LayerRecord] = []
    for record in records:
        record.inputs = tuple(renamed.get(n, n) for n in record.inputs)
        if record.kind != "batchnorm":
            kept.append(record)
            continue
        producer = by_name[record.inputs[0]]
        sole = sum(record.inputs[0] in r.inputs for r in records) == 1
        if producer.kind not in ("conv", "dense") or not sole:
            kept.append(replace(record, kind="unsupported",
                                reason="BatchNorm not directly after a conv/linear"))
            continue
        producer.module = _folded(producer.module, record.module)
        producer.output_shape = record.output_shape
        renamed[record.name] = producer.name
    return StudentGraph(kept, graph.input_shape, graph.timesteps)


def _folded(linear: nn.Module, bn: nn.Module) -> nn.Module:
    """``bn(linear(x))`` as one layer: w' = w * g / sqrt(var + eps), b' = (b - mean) * g' + beta."""
    fused = copy.deepcopy(linear)
    with torch.no_grad():
        scale = bn.running_var.add(bn.eps).rsqrt()
        if bn.weight is not None:
            scale = scale * bn.weight
        bias = linear.bias if linear.bias is not None else torch.zeros_like(bn.running_mean)
        new_bias = (bias - bn.running_mean) * scale
        if bn.bias is not None:
            new_bias = new_bias + bn.bias
        shape = (-1,) + (1,) * (linear.weight.dim() - 1)
        fused.weight = nn.Parameter(linear.weight * scale.reshape(shape))
        fused.bias = nn.Parameter(new_bias)
    return fused
