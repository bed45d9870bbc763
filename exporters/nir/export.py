"""NIR export of a spiking student, checked by reading the file back and simulating it.

Discrete -> continuous. NIR describes continuous-time nodes; simulators integrate them with
their own step ``dt``. spikingjelly's LIF update ``h = v + (x - (v - v_reset)) / tau`` is the
forward-Euler step of NIR's ``tau_c dv/dt = (v_leak - v) + r I`` with ``tau_c = tau * dt``,
``r = 1`` (``r = tau`` when ``decay_input=False``) and ``v_leak = v_reset``; IF's ``h = v + x``
is ``dv/dt = r I`` with ``r = 1 / dt``; the current-based LIF (``CUBALIFNode``) is NIR's
``CubaLIF`` with ``tau_syn = dt / (1 - c_decay)``, ``tau_mem = dt / (1 - v_decay)``,
``w_in = tau_syn / dt``, ``r = tau_mem / dt``. This is the convention of spikingjelly's own
``nir_exchange`` and of snnTorch's importer; ``dt`` defaults to 1e-4 s (snnTorch's importer
cannot use another) and is stored in the graph metadata with T.

Forms chosen so that the consumers read the file as written (docs/nir.md has the measured
matrix): Flatten dims are negative (batch-agnostic: snnTorch and Norse hand them to
``torch.nn.Flatten`` on the batched tensor); neuron parameters are arrays of the layer's neuron
shape (nir 1.0.8's type check rejects scalars on a conv or dense layer); a 2-D conv network on
one-row input (mnist1d) is written as ``Conv1d`` over ``(C, W)`` (nir types a 1x3 ``Conv2d``
wrongly and ``nir.read`` then rejects the file); an average pool that feeds only convs/linears
is a ``SumPool2d`` with ``1/k^2`` folded into those weights (Norse has no AvgPool2d); edges
are listed in execution order, the main branch of a residual block before its shortcut.

What NIR cannot say is refused, naming the layer: soft reset, ``v_reset != 0`` (NIR has no
initial membrane value and spikingjelly starts at ``v_reset``), max pooling, BatchNorm not
directly after a conv/linear (the others are folded in). Residual additions become two edges
into one node (NIR sums a node's inputs). Thresholds: spikingjelly fires at ``h >= v_threshold``,
NIR at ``v > v_threshold``; they differ only on exact equality.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import nir
import numpy as np
import torch
from torch import nn

from neurokd.data.encoding import is_static
from neurokd.errors import NeuroKDError
from neurokd.files.safe_io import atomic_path
from neurokd.runtime.progress import Reporter
from neurokd.student.inputs import source_inputs
from neurokd.student.sources import StudentSource, as_source

from ..base import Exporter, ExportResult
from ..graph import LayerRecord, StudentGraph, fold_batchnorm, trace_student
from ..verify import compare, eager_run, private_copy
from . import consumers
from .consumers import ConsumerResult, consumer_table
from .layout import Layout, adaptive_kernel, nir_layout, padding_of, pool_window
from .simulator import NirSimulator

DT = 1e-4  # seconds per discrete timestep, as in spikingjelly's nir_exchange and snnTorch
NIR_KINDS = ("conv", "dense", "flatten", "avgpool", "neuron", "add")
LOGIT_TOLERANCE = 1e-4


@dataclass
class NirExportResult(ExportResult):
    nodes: dict[str, str]            # NIR node name -> NIR type
    layer_names: dict[str, str]      # NIR node name -> module path in the student
    edges: int
    dt: float
    timesteps: int
    folded_batchnorm: list[str]      # BatchNorm layers merged into the conv/linear before them
    one_dimensional: bool = False    # unit-height convs written as Conv1d over (C, W)
    sum_pools: list[str] = field(default_factory=list)  # average pools written as SumPool2d
    consumers: list[ConsumerResult] = field(default_factory=list)
    importer: str = "neurokd's NIR reference simulator (forward Euler)"

    def summary_lines(self) -> list[str]:
        kinds: dict[str, int] = {}
        for kind in self.nodes.values():
            kinds[kind] = kinds.get(kind, 0) + 1
        summary = ", ".join(f"{k} x{n}" for k, n in kinds.items())
        lines = [f"wrote {self.path}: {len(self.nodes)} nodes ({summary}), {self.edges} edges, "
                 f"dt {self.dt:g} s, T={self.timesteps}"]
        if self.folded_batchnorm:
            lines.append("  BatchNorm folded: " + ", ".join(self.folded_batchnorm))
        if self.one_dimensional:
            lines.append("  one-row input: 1xk convs written as Conv1d over (C, W)")
        if self.sum_pools:
            lines.append("  average pools written as SumPool2d (1/k^2 in the next weights): "
                         + ", ".join(self.sum_pools))
        lines.append(self.agreement_line("nir.read + re-simulation"))
        if self.consumers:
            lines += consumer_table(self.consumers)
        return lines


def _nir_ready(graph: StudentGraph) -> StudentGraph:
    """BatchNorm folded, and what NIR cannot say marked ``unsupported`` with the reason."""
    folded = fold_batchnorm(graph)
    _mark_nir_limits(folded)
    return folded


def nir_limits(graph: StudentGraph) -> list[str]:
    """Layers NIR cannot express (soft reset, v_reset != 0, max pooling, ...), by name."""
    return _nir_ready(graph).offending(NIR_KINDS)


def to_nir_graph(graph: StudentGraph, dt: float = DT, metadata: dict | None = None
                 ) -> tuple[nir.NIRGraph, dict[str, str], Layout]:
    """The NIR graph of a traced student, NIR node name -> record name, and the layout used."""
    if not dt > 0:
        raise NeuroKDError(f"dt must be > 0, not {dt}")
    folded = _nir_ready(graph)
    folded.require(NIR_KINDS, "NIR")  # one error naming every layer NIR cannot take
    layout = nir_layout(folded)
    names = _node_names(folded)
    nodes = {names["input"]: nir.Input(input_type={"input": np.array(
        layout.shape(graph.input_shape))})}
    edges: list[tuple[str, str]] = []
    for record in folded.records[1:]:
        if record.kind == "add":
            continue  # a node sums all edges into it: additions are edges, not nodes
        if record.kind == "output":
            out_shape = layout.shape(folded[record.inputs[0]].output_shape)
            nodes[names["output"]] = nir.Output(output_type={"output": np.array(out_shape)})
        else:
            nodes[names[record.name]] = _node(record, dt, layout)
        for source in _sources(folded, record.inputs):
            edges.append((names[source], names[record.name]))
    info = {"producer": "neurokd", "dt": float(dt), "timesteps": int(graph.timesteps),
            "input_shape": [int(d) for d in graph.input_shape],
            "discretisation": "forward Euler, tau_c = tau * dt"}
    info |= {k: v for k, v in (metadata or {}).items() if v is not None}
    try:
        nir_graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=info, type_check=True)
    except (AssertionError, ValueError) as exc:
        raise NeuroKDError(f"NIR rejects the graph: {exc}") from None
    return nir_graph, {nir_name: record for record, nir_name in names.items()}, layout


def _mark_nir_limits(graph: StudentGraph) -> None:
    """Records NIR cannot express become ``unsupported`` with the reason."""
    for record in graph.records:
        if record.kind not in ("neuron", "maxpool") and not record.input_shape:
            continue  # shapes are only known when every layer is understood
        reason = _nir_limit(record)
        if reason:
            record.kind, record.reason = "unsupported", reason


def _nir_limit(record: LayerRecord) -> str:
    module = record.module
    if record.kind == "neuron":
        if record.neuron.v_reset is None:
            return "soft reset (v_reset=None): NIR LIF/IF can only reset to v_reset"
        if record.neuron.v_reset != 0.0:
            return "v_reset != 0: NIR has no initial membrane value"
    elif record.kind == "maxpool":
        return "max pooling: NIR has no max-pool node"
    elif record.kind == "conv" and module.padding_mode != "zeros":
        return f"conv with padding_mode={module.padding_mode!r}"
    elif record.kind == "avgpool":
        if isinstance(module, nn.AvgPool1d | nn.AdaptiveAvgPool1d) or len(record.input_shape) != 3:
            return "1-d average pooling: NIR has AvgPool2d only"
        if isinstance(module, nn.AvgPool2d) and (
                module.ceil_mode or module.divisor_override or
                (module.padding not in (0, (0, 0)) and not module.count_include_pad)):
            return "AvgPool2d with ceil_mode/divisor_override/padding without count_include_pad"
        if isinstance(module, nn.AdaptiveAvgPool2d) and adaptive_kernel(record) is None:
            return "adaptive average pooling with uneven windows"
    elif record.kind == "flatten" and _flattens_batch(record):
        return "flatten across the batch axis"
    return ""


def _node_names(graph: StudentGraph) -> dict[str, str]:
    """Record name -> NIR node name: dots become underscores (names become torch attributes
    in most NIR importers), made unique."""
    names: dict[str, str] = {}
    for record in graph.records:
        base = record.name.replace(".", "_").replace("/", "_").replace("#", "_") or "node"
        name, k = base, 1
        while name in names.values():
            name, k = f"{base}_{k}", k + 1
        names[record.name] = name
    return names


def _sources(graph: StudentGraph, inputs: tuple[str, ...]) -> list[str]:
    found = []
    for name in inputs:
        record = graph[name]
        found += _sources(graph, record.inputs) if record.kind == "add" else [name]
    return found


def _node(record: LayerRecord, dt: float, layout: Layout) -> nir.NIRNode:
    module, scale = record.module, layout.weight_scale.get(record.name, 1.0)
    if record.kind == "conv":
        return _conv_node(record, layout, scale)
    if record.kind == "dense":
        weight = _np(module.weight) * np.float32(scale)
        return nir.Linear(weight) if module.bias is None else nir.Affine(weight, _np(module.bias))
    if record.kind == "flatten":
        start, end = _flatten_dims(record, layout)
        return nir.Flatten(input_type={"input": np.array(layout.shape(record.input_shape))},
                           start_dim=start, end_dim=end)
    if record.kind == "avgpool":
        kernel, stride, padding = pool_window(record)
        pool = nir.SumPool2d if record.name in layout.sum_pools else nir.AvgPool2d
        return pool(kernel_size=np.array(kernel), stride=np.array(stride),
                    padding=np.array(padding))
    return _neuron_node(record, dt, layout.shape(record.input_shape))


def _conv_node(record: LayerRecord, layout: Layout, scale: float) -> nir.NIRNode:
    module = record.module
    weight = _np(module.weight) * np.float32(scale)
    bias = _np(module.bias) if module.bias is not None else np.zeros(weight.shape[0], np.float32)
    padding = padding_of(module)
    if isinstance(module, nn.Conv1d) or layout.one_dimensional:
        if layout.one_dimensional:  # (C_out, C_in, 1, k) -> (C_out, C_in, k); H is 1 throughout
            weight, padding = weight[:, :, 0, :], padding[1:]
        return nir.Conv1d(input_shape=int(record.input_shape[-1]), weight=weight,
                          stride=module.stride[-1], padding=padding[-1],
                          dilation=module.dilation[-1], groups=module.groups, bias=bias)
    return nir.Conv2d(input_shape=tuple(int(d) for d in record.input_shape[-2:]), weight=weight,
                      stride=tuple(module.stride), padding=padding,
                      dilation=tuple(module.dilation), groups=module.groups, bias=bias)


def _neuron_node(record: LayerRecord, dt: float, shape: tuple[int, ...]) -> nir.NIRNode:
    p = record.neuron

    def full(value: float) -> np.ndarray:  # float64: tau * dt and 1 / dt stay exact enough
        return np.full(shape, value, dtype=np.float64)

    if p.model == "if":
        return nir.IF(r=full(1.0 / dt), v_threshold=full(p.v_threshold), v_reset=full(p.v_reset))
    if p.model == "cubalif":
        tau_syn, tau_mem = dt / (1.0 - p.c_decay), dt / (1.0 - p.v_decay)
        return nir.CubaLIF(tau_syn=full(tau_syn), tau_mem=full(tau_mem), r=full(tau_mem / dt),
                           v_leak=full(0.0), v_threshold=full(p.v_threshold),
                           v_reset=full(p.v_reset), w_in=full(tau_syn / dt))
    return nir.LIF(tau=full(p.tau * dt), r=full(1.0 if p.decay_input else p.tau),
                   v_leak=full(p.v_reset), v_threshold=full(p.v_threshold),
                   v_reset=full(p.v_reset))


def _flattens_batch(record: LayerRecord) -> bool:
    rank = len(record.input_shape) + 1
    return record.module.start_dim % rank == 0


def _flatten_dims(record: LayerRecord, layout: Layout) -> tuple[int, int]:
    """NIR Flatten dims over the batchless input, as negative indices (batch-agnostic: they
    mean the same with or without a leading batch axis, as every importer needs)."""
    rank = len(record.input_shape)
    start = record.module.start_dim % (rank + 1) - 1  # torch dims count the batch axis
    end = record.module.end_dim % (rank + 1) - 1
    if layout.one_dimensional and rank == 3:  # (C, 1, W) is written as (C, W)
        start, end, rank = (0, 1, 1)[start], (0, 0, 1)[end], 2
        if end < start:  # only the unit axis: nothing to flatten
            start = end = rank - 1
    return start - rank, end - rank


def _np(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(np.float32)


def export_nir(source: StudentSource | nn.Module | str | Path, path: str | Path,
               dt: float = DT, max_samples: int = 512, dataset: str | None = None,
               data_dir: str | None = None, random_inputs: bool = False,
               batch_size_check: int = 64, input_shape: tuple[int, ...] | None = None,
               timesteps: int | None = None, check_consumers: bool = False,
               reporter: Reporter | None = None) -> NirExportResult:
    """Write the student as a NIR graph (HDF5), after ``nir.read`` + re-simulation of the
    written bytes reproduces it (same predictions, logits within 1e-4 x max(1, |logit|)).
    ``check_consumers`` then runs the written file in every installed NIR consumer
    (snnTorch, Norse, spikingjelly, Sinabs, Rockpool) and reports how each did."""
    source = as_source(source, input_shape, timesteps)
    model = private_copy(source.model)
    graph = trace_student(model, source.input_shape, source.timesteps, batch_size_check)
    config = source.config or {}
    # the run's early exit as JSON text: NIR's HDF5 metadata holds flat values only
    exit_json = json.dumps(source.exit) if source.exit else None
    nir_graph, layer_names, layout = to_nir_graph(graph, dt, {"dataset": config.get("dataset"),
                                                              "exit": exit_json})
    inputs, _, described = source_inputs(source, "test", max_samples, dataset, data_dir,
                                         random_inputs)
    if not is_static(inputs, source.input_shape):  # event frames, rate-coded spikes
        raise NeuroKDError("NIR export: the written graph is re-simulated, and run in the NIR "
                           "consumers, with a static input held at every step; a student on "
                           "[T, batch, ...] spike inputs (event data, --encoding rate) cannot be "
                           "checked that way yet; export it to ONNX or Loihi")
    neuron_nodes = {record: name for name, record in layer_names.items()}
    spike_nodes = [neuron_nodes[r.name] for r in graph.neurons]
    reference = eager_run(model, [r.module for r in graph.neurons])
    with atomic_path(path) as tmp:
        nir.write(tmp, nir_graph)
        written = nir.read(tmp)  # the check runs on what the file holds, not on memory
        simulator = NirSimulator(written, dt)

        def candidate(x: torch.Tensor):
            logits, spikes = simulator(x.reshape(len(x), *layout.shape(source.input_shape)),
                                       source.timesteps)
            return logits.numpy(), [spikes[name].reshape(*spikes[name].shape[:2], *r.output_shape)
                                    .numpy() for name, r in zip(spike_nodes, graph.neurons,
                                                                strict=True)]

        agreement = compare(reference, candidate, inputs, batch_size_check,
                            [r.name for r in graph.neurons])
        agreement.check("NIR", LOGIT_TOLERANCE, spikes_exact=False)
    folded = [r.name for r in graph.records if r.kind == "batchnorm"]
    result = NirExportResult(Path(path), Path(path).stat().st_size, described, agreement,
                             {n: type(v).__name__ for n, v in nir_graph.nodes.items()},
                             layer_names, len(nir_graph.edges), dt, source.timesteps, folded,
                             layout.one_dimensional, layout.sum_pools)
    if check_consumers:
        result.consumers = consumers.check_consumers(Path(path), inputs, reference(inputs)[0],
                                           source.timesteps, dt, batch_size_check, reporter)
    return result


EXPORTER = Exporter("nir", ".nir", "a NIR graph (HDF5) for other SNN simulators, read back and "
                    "re-simulated", export_nir, nir_limits,
                    ("dt", "check_consumers", "reporter"))
