"""NIR export of a spiking student, checked by reading the file back and simulating it.

Discrete -> continuous. NIR describes continuous-time nodes; simulators integrate them with
their own step ``dt``. spikingjelly's LIF update ``h = v + (x - (v - v_reset)) / tau`` is the
forward-Euler step of NIR's ``tau_c dv/dt = (v_leak - v) + r I`` with ``tau_c = tau * dt``,
``r = 1`` (``r = tau`` when ``decay_input=False``) and ``v_leak = v_reset``; IF's ``h = v + x``
is ``dv/dt = r I`` with ``r = 1 / dt``. This is the convention of spikingjelly's own
``nir_exchange`` (and of snnTorch/Norse imports); ``dt`` defaults to 1e-4 s like theirs, and is
stored in the graph metadata with T. A simulator using the exact exponential step instead would
see a decay of ``exp(-1/tau)`` per step rather than ``1 - 1/tau``.

What NIR cannot say is refused, naming the layer: soft reset (NIR LIF/IF set ``v = v_reset``
after a spike; subtracting the threshold has no field), ``v_reset != 0`` (NIR has no initial
membrane value and spikingjelly starts at ``v_reset``), max pooling, BatchNorm not directly after
a conv/linear (the others are folded in: NIR has no BatchNorm). Residual additions become two
edges into one node (NIR sums a node's inputs). Thresholds: spikingjelly fires at
``h >= v_threshold``, NIR at ``v > v_threshold``; they differ only on exact equality.

spikingjelly's ``export_to_nir`` is not used: it needs ``nirtorch`` (not installed here),
does not fold BatchNorm, and cannot trace the students' ``forward`` (a branch on ``x.dim()``).
The importer below is written from the NIR node definitions alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from graphlib import TopologicalSorter
from pathlib import Path

import nir
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neurokd.errors import NeuroKDError
from neurokd.fileio import atomic_path
from neurokd.inputs import source_inputs
from neurokd.sources import StudentSource, as_source

from .base import Exporter, ExportResult
from .graph import LayerRecord, StudentGraph, fold_batchnorm, trace_student
from .pool_fold import adaptive_window, pair
from .verify import compare, eager_run, private_copy

DT = 1e-4  # seconds per discrete timestep, as in spikingjelly's nir_exchange
NIR_KINDS = ("conv", "linear", "flatten", "avgpool", "neuron", "add")
LOGIT_TOLERANCE = 1e-4


@dataclass
class NirExportResult(ExportResult):
    nodes: dict[str, str]            # NIR node name -> NIR type
    layer_names: dict[str, str]      # NIR node name -> module path in the student
    edges: int
    dt: float
    timesteps: int
    folded_batchnorm: list[str]      # BatchNorm layers merged into the conv/linear before them
    importer: str = "neurokd.exporters.nir.import_nir (forward Euler)"

    def summary_lines(self) -> list[str]:
        kinds: dict[str, int] = {}
        for kind in self.nodes.values():
            kinds[kind] = kinds.get(kind, 0) + 1
        summary = ", ".join(f"{k} x{n}" for k, n in kinds.items())
        lines = [f"wrote {self.path}: {len(self.nodes)} nodes ({summary}), {self.edges} edges, "
                 f"dt {self.dt:g} s, T={self.timesteps}"]
        if self.folded_batchnorm:
            lines.append("  BatchNorm folded: " + ", ".join(self.folded_batchnorm))
        return lines + [self.agreement_line("nir.read + re-simulation")]


def _nir_ready(graph: StudentGraph) -> StudentGraph:
    """BatchNorm folded, and what NIR cannot say marked ``unsupported`` with the reason."""
    folded = fold_batchnorm(graph)
    _mark_nir_limits(folded)
    return folded


def nir_limits(graph: StudentGraph) -> list[str]:
    """Layers NIR cannot express (soft reset, v_reset != 0, max pooling, ...), by name."""
    return _nir_ready(graph).offending(NIR_KINDS)


def to_nir_graph(graph: StudentGraph, dt: float = DT) -> tuple[nir.NIRGraph, dict[str, str]]:
    """The NIR graph of a traced student, and NIR node name -> record name."""
    if not dt > 0:
        raise NeuroKDError(f"dt must be > 0, not {dt}")
    folded = _nir_ready(graph)
    folded.require(NIR_KINDS, "NIR")  # one error naming every layer NIR cannot take
    names = _node_names(folded)
    nodes = {names["input"]: nir.Input(input_type={"input": np.array(graph.input_shape)})}
    edges: list[tuple[str, str]] = []
    for record in folded.records[1:]:
        if record.kind == "add":
            continue  # a node sums all edges into it: additions are edges, not nodes
        if record.kind == "output":
            out_shape = folded[record.inputs[0]].output_shape
            nodes[names["output"]] = nir.Output(output_type={"output": np.array(out_shape)})
        else:
            nodes[names[record.name]] = _node(record, dt)
        for source in _sources(folded, record.inputs):
            edges.append((names[source], names[record.name]))
    metadata = {"producer": "neurokd", "dt": float(dt), "timesteps": int(graph.timesteps),
                "discretisation": "forward Euler, tau_c = tau * dt"}
    try:
        nir_graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=True)
    except (AssertionError, ValueError) as exc:
        raise NeuroKDError(f"NIR rejects the graph: {exc}") from None
    return nir_graph, {nir_name: record for record, nir_name in names.items()}


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
        if isinstance(module, nn.AdaptiveAvgPool2d) and _adaptive_kernel(record) is None:
            return "adaptive average pooling with uneven windows"
    elif record.kind == "flatten" and _flatten_dims(record) is None:
        return "flatten across the batch axis"
    return ""


def _node_names(graph: StudentGraph) -> dict[str, str]:
    """Record name -> NIR node name: dots become underscores (names become torch attributes
    in most NIR importers), made unique."""
    names: dict[str, str] = {}
    for record in graph.records:
        base = record.name.replace(".", "_").replace("/", "_") or "node"
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


def _node(record: LayerRecord, dt: float) -> nir.NIRNode:
    module = record.module
    if record.kind == "conv":
        return _conv_node(record)
    if record.kind == "linear":
        weight = _np(module.weight)
        return nir.Linear(weight) if module.bias is None else nir.Affine(weight, _np(module.bias))
    if record.kind == "flatten":
        start, end = _flatten_dims(record)
        return nir.Flatten(input_type={"input": np.array(record.input_shape)},
                           start_dim=start, end_dim=end)
    if record.kind == "avgpool":
        if isinstance(module, nn.AdaptiveAvgPool2d):
            kernel, stride, padding = _adaptive_kernel(record), _adaptive_kernel(record), (0, 0)
        else:
            kernel, stride, padding = module.kernel_size, module.stride, module.padding
        return nir.AvgPool2d(kernel_size=np.array(pair(kernel)), stride=np.array(pair(stride)),
                             padding=np.array(pair(padding)))
    return _neuron_node(record, dt)


def _conv_node(record: LayerRecord) -> nir.NIRNode:
    module = record.module
    weight = _np(module.weight)
    bias = _np(module.bias) if module.bias is not None else np.zeros(weight.shape[0], np.float32)
    padding = module.padding if isinstance(module.padding, str) else tuple(module.padding)
    if isinstance(module, nn.Conv1d):
        return nir.Conv1d(input_shape=int(record.input_shape[-1]), weight=weight,
                          stride=module.stride[0],
                          padding=padding if isinstance(padding, str) else padding[0],
                          dilation=module.dilation[0], groups=module.groups, bias=bias)
    return nir.Conv2d(input_shape=tuple(int(d) for d in record.input_shape[-2:]), weight=weight,
                      stride=tuple(module.stride), padding=padding,
                      dilation=tuple(module.dilation), groups=module.groups, bias=bias)


def _neuron_node(record: LayerRecord, dt: float) -> nir.NIRNode:
    p = record.neuron
    shape = tuple(record.input_shape)

    def full(value: float) -> np.ndarray:  # float64: tau * dt and 1 / dt stay exact enough
        return np.full(shape, value, dtype=np.float64)

    if p.model == "if":
        return nir.IF(r=full(1.0 / dt), v_threshold=full(p.v_threshold), v_reset=full(p.v_reset))
    return nir.LIF(tau=full(p.tau * dt), r=full(1.0 if p.decay_input else p.tau),
                   v_leak=full(p.v_reset), v_threshold=full(p.v_threshold),
                   v_reset=full(p.v_reset))


def _flatten_dims(record: LayerRecord) -> tuple[int, int] | None:
    """torch dims over [N, *shape] -> NIR dims over shape (no batch axis); None if N is hit."""
    rank = len(record.input_shape) + 1
    start, end = record.module.start_dim % rank, record.module.end_dim % rank
    if start == 0:
        return None
    return start - 1, -1 if end == rank - 1 else end - 1


def _adaptive_kernel(record: LayerRecord) -> tuple[int, int] | None:
    return adaptive_window(record.module.output_size, *record.input_shape[-2:])


def _np(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(np.float32)


def export_nir(source: StudentSource | nn.Module | str | Path, path: str | Path,
               dt: float = DT, max_samples: int = 512, dataset: str | None = None,
               data_dir: str | None = None, random_inputs: bool = False,
               batch_size_check: int = 64, input_shape: tuple[int, ...] | None = None,
               timesteps: int | None = None) -> NirExportResult:
    """Write the student as a NIR graph (HDF5), after ``nir.read`` + re-simulation of the
    written bytes reproduces it (same predictions, logits within 1e-4 x max(1, |logit|))."""
    source = as_source(source, input_shape, timesteps)
    model = private_copy(source.model)
    graph = trace_student(model, source.input_shape, source.timesteps)
    nir_graph, layer_names = to_nir_graph(graph, dt)
    inputs, _, described = source_inputs(source, "test", max_samples, dataset, data_dir,
                                         random_inputs)
    neuron_nodes = {record: name for name, record in layer_names.items()}
    with atomic_path(path) as tmp:
        nir.write(tmp, nir_graph)
        simulator = import_nir(nir.read(tmp), dt)
        spike_nodes = [neuron_nodes[r.name] for r in graph.neurons]

        def candidate(x: torch.Tensor):
            logits, spikes = simulator(x, source.timesteps)
            return logits.numpy(), [spikes[name].numpy() for name in spike_nodes]

        reference = eager_run(model, [r.module for r in graph.neurons])
        agreement = compare(reference, candidate, inputs, batch_size_check,
                            [r.name for r in graph.neurons])
        agreement.check("NIR", LOGIT_TOLERANCE, spikes_exact=False)
    folded = [r.name for r in graph.records if r.kind == "batchnorm"]
    return NirExportResult(Path(path), Path(path).stat().st_size, described, agreement,
                           {n: type(v).__name__ for n, v in nir_graph.nodes.items()},
                           layer_names, len(nir_graph.edges), dt, source.timesteps, folded)


class NirSimulator(nn.Module):
    """Runs a NIR graph for T steps of ``dt`` (forward Euler), the input held constant.

    Each step evaluates the nodes in topological order; a node's input is the sum of all
    edges into it. ``forward(x, timesteps) -> (output [T, B, ...], {neuron node: spikes})``.
    """

    SUPPORTED = (nir.Input, nir.Output, nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d,
                 nir.Flatten, nir.AvgPool2d, nir.SumPool2d, nir.LIF, nir.IF)

    def __init__(self, graph: nir.NIRGraph, dt: float = DT):
        super().__init__()
        unknown = [f"{n} ({type(v).__name__})" for n, v in graph.nodes.items()
                   if not isinstance(v, self.SUPPORTED)]
        if unknown:
            raise NeuroKDError(f"NIR import: unsupported nodes: {', '.join(unknown)}")
        self.nodes, self.dt = graph.nodes, float(dt)
        self.sources: dict[str, list[str]] = {name: [] for name in graph.nodes}
        for src, dst in graph.edges:
            self.sources[dst].append(src)
        self.order = list(TopologicalSorter(self.sources).static_order())
        self.outputs = [n for n, v in graph.nodes.items() if isinstance(v, nir.Output)]
        if len(self.outputs) != 1:
            raise NeuroKDError(f"NIR import: expected one output node, found {len(self.outputs)}")
        self.params = {name: _tensors(node, self.dt) for name, node in graph.nodes.items()}

    def forward(self, x: torch.Tensor, timesteps: int):
        state: dict[str, torch.Tensor] = {}
        outputs, spikes = [], {n: [] for n, v in self.nodes.items()
                               if isinstance(v, nir.LIF | nir.IF)}
        with torch.no_grad():
            for _ in range(timesteps):
                values: dict[str, torch.Tensor] = {}
                for name in self.order:
                    node = self.nodes[name]
                    drive = x if isinstance(node, nir.Input) else sum(
                        values[s] for s in self.sources[name])
                    values[name] = self._step(name, node, drive, state)
                    if name in spikes:
                        spikes[name].append(values[name])
                outputs.append(values[self.outputs[0]])
        return torch.stack(outputs), {n: torch.stack(s) for n, s in spikes.items()}

    def _step(self, name: str, node: nir.NIRNode, x: torch.Tensor, state) -> torch.Tensor:
        p = self.params[name]
        if isinstance(node, nir.Input | nir.Output):
            return x
        if isinstance(node, nir.Affine | nir.Linear):
            return F.linear(x, p["weight"], p.get("bias"))
        if isinstance(node, nir.Conv1d | nir.Conv2d):
            conv = F.conv1d if isinstance(node, nir.Conv1d) else F.conv2d
            padding = node.padding if isinstance(node.padding, str) else _ints(node.padding)
            return conv(x, p["weight"], p["bias"], _ints(node.stride), padding,
                        _ints(node.dilation), int(node.groups))
        if isinstance(node, nir.Flatten):
            end = int(node.end_dim)
            return torch.flatten(x, int(node.start_dim) + 1, end + 1 if end >= 0 else end)
        if isinstance(node, nir.AvgPool2d | nir.SumPool2d):
            kernel = _ints(node.kernel_size)
            out = F.avg_pool2d(x, kernel, _ints(node.stride), _ints(node.padding))
            return out * float(np.prod(kernel)) if isinstance(node, nir.SumPool2d) else out
        v = state.get(name, torch.zeros_like(x))  # NIR gives no initial state: rest at 0
        if isinstance(node, nir.IF):  # dv/dt = r I
            h = v + p["gain"] * x
        else:  # LIF: tau dv/dt = (v_leak - v) + r I
            h = v + p["gain"] * ((p["v_leak"] - v) + p["r"] * x)
        fired = h > p["v_threshold"]  # NIR: z = 1 if v > v_threshold
        state[name] = torch.where(fired, p["v_reset"].expand_as(h), h)
        return fired.float()


def _tensors(node: nir.NIRNode, dt: float) -> dict[str, torch.Tensor]:
    """Node parameters as float32 tensors; the Euler gain dt/tau (or dt*r) taken in float64."""
    def f32(value) -> torch.Tensor:
        return torch.as_tensor(np.asarray(value, dtype=np.float64)).float()

    found = {k: f32(getattr(node, k)) for k in ("weight", "bias", "r", "v_leak", "v_threshold",
                                                 "v_reset") if getattr(node, k, None) is not None}
    if isinstance(node, nir.LIF):
        found["gain"] = f32(dt / np.asarray(node.tau, dtype=np.float64))
    elif isinstance(node, nir.IF):
        found["gain"] = f32(dt * np.asarray(node.r, dtype=np.float64))
    return found


def _ints(value) -> tuple[int, ...] | int:
    array = np.atleast_1d(np.asarray(value)).astype(int)
    return tuple(int(v) for v in array) if array.size > 1 else int(array[0])


def import_nir(graph: nir.NIRGraph | str | Path, dt: float = DT) -> NirSimulator:
    """A PyTorch simulator of a NIR graph (an object or a file written by ``nir.write``)."""
    if isinstance(graph, str | Path):
        try:
            graph = nir.read(graph)
        except (OSError, KeyError, ValueError) as exc:
            raise NeuroKDError(f"cannot read NIR file {graph}: {exc}") from None
    return NirSimulator(graph, dt)


EXPORTER = Exporter("nir", ".nir", "a NIR graph (HDF5) for other SNN simulators, read back and "
                    "re-simulated", export_nir, nir_limits, ("dt",))
