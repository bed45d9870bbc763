"""A NIR file as a source: read a graph written by neurokd, snnTorch, Norse or spikingjelly
into a multi-step spikingjelly model, so ONNX/Loihi export and energy counting work unchanged.

A NIR file is untrusted input. Before ``nir.read`` loads any array, the HDF5 file is walked
with h5py: every node's type must be one neurokd reads (else the error names the node), no
node may be a subgraph, and the arrays together must fit in memory. After reading: one input,
one output, every edge between known nodes, no cycle (the recurrent edge is named), every
node connected, and each node's input shape inferred from the input and checked against its
weights (a mismatch names the node). Only then is anything built. Every refusal is one
:class:`NeuroKDError` naming the node(s) and why.

Conventions (``CONVENTIONS``). NIR nodes are continuous-time; a producer's discrete network is
the forward-Euler step of ``dt``. ``nir`` (the spec, as neurokd, snnTorch and spikingjelly
write it) takes ``dt`` from the graph metadata, else 1e-4 s (the step snnTorch's and
spikingjelly's exporters assume and do not record): a LIF of time constant ``tau`` decays by
``dt/tau`` per step. ``norse`` reads Norse 1.1's ``to_nir``, which writes ``tau = dt * tau_mem``
(a unit slip; its ``dt`` defaults to 1e-3 and is not recorded), so the per-step decay is
``dt^2 / tau``. How each node becomes a spikingjelly layer is in ``nir_modules.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ...errors import NeuroKDError
from ...files.budget import check_bytes
from ...files.hdf5 import check_hdf5_tree
from ...files.paths import regular_size
from ...text import describe
from .shapes import READ_TYPES, array, infer_shapes

MAX_NODES = 10_000
MAX_STEPS = 100_000


@dataclass(frozen=True)
class NirConvention:
    name: str
    summary: str
    default_dt: float
    uses_metadata_dt: bool

    def steps(self, tau: float, dt: float) -> float:
        """A time constant of the file in timesteps of the discrete network."""
        return tau / (dt * dt) if self.name == "norse" else tau / dt

    def if_gain(self, r: float, dt: float) -> float:
        """What an IF node multiplies its input by per step (Norse's IAF adds it: r unused)."""
        return 1.0 if self.name == "norse" else r * dt


CONVENTIONS: dict[str, NirConvention] = {c.name: c for c in (
    NirConvention("nir", "the NIR spec as neurokd, snnTorch and spikingjelly write it: "
                  "tau in seconds, dt from the metadata, else 1e-4 s", 1e-4, True),
    NirConvention("norse", "Norse 1.1 to_nir: tau holds dt * tau_mem, dt 1e-3 s unless "
                  "--nir-dt", 1e-3, False),
)}


@dataclass
class NirNetwork:
    """A NIR graph as a spikingjelly model taking ``[B, *input_shape]`` or ``[T, B, ...]``."""

    model: nn.Module
    input_shape: tuple[int, ...]
    timesteps: int
    dt: float
    convention: str
    metadata: dict[str, Any]
    nodes: dict[str, str]                      # node -> NIR type
    layers: dict[str, str]                     # node -> module name in the model
    notes: list[str] = field(default_factory=list)  # what was adapted, for the user


def read_nir(source, timesteps: int | None = None, input_shape: tuple[int, ...] | None = None,
             convention: str = "nir", dt: float | None = None) -> NirNetwork:
    """The network of a NIR file (or an in-memory ``nir.NIRGraph``); T and the input shape
    come from the metadata / the Input node unless given."""
    from .modules import build_network

    if convention not in CONVENTIONS:
        raise NeuroKDError(f"unknown NIR convention {convention!r}; choose from "
                           f"{', '.join(CONVENTIONS)}")
    label = str(source) if isinstance(source, str | Path) else "NIR graph"
    notes: list[str] = []
    graph = _read_checked(Path(source), notes) if isinstance(source, str | Path) else source
    _check_values(graph, label)
    metadata = _metadata(graph, label)
    rule = CONVENTIONS[convention]
    step = _dt(metadata, rule, dt, label)
    steps = _timesteps(metadata, timesteps, label)
    order, sources = _structure(graph, label)
    shapes = infer_shapes(graph, order, sources, input_shape, metadata, label, notes)
    # one sample through all its timesteps, a layer's input and output at once: within the
    # memory budget before the model is built and run (a huge Input shape asks for GiBs)
    largest = max(math.prod(shape) for shape in (shapes.input_shape, *shapes.outputs.values()))
    check_bytes(2 * 4 * steps * largest, f"{label}: one sample over its {steps} timesteps "
                f"(a layer of {largest:,} values)")
    model, layers = build_network(graph, order, sources, shapes, rule, step, steps, label, notes)
    return NirNetwork(model, shapes.input_shape, steps, step, convention, metadata,
                      {n: type(v).__name__ for n, v in graph.nodes.items()}, layers, notes)


def _read_checked(path: Path, notes: list[str]):
    import nir

    _check_file(path)
    try:
        return nir.read(path)
    except Exception as exc:  # noqa: BLE001 - a malformed node is a bad file, whatever nir raises
        if not (isinstance(exc, ValueError) and "type inference" in str(exc).lower()):
            raise NeuroKDError(f"{path}: nir.read fails: {describe(exc)}") from None
        notes.append(f"nir's type check rejects the file ({describe(exc)}); read without it, "
                     "shapes checked by neurokd")
    try:
        return nir.read(path, type_check=False)
    except Exception as exc:  # noqa: BLE001 - a malformed node is a bad file, whatever nir raises
        raise NeuroKDError(f"{path}: nir.read fails: {describe(exc)}") from None


def _check_file(path: Path) -> None:
    """Types and sizes from the HDF5 headers, before any array is read."""
    import h5py

    # a FIFO would block HDF5's open: refused by name, as a device or a folder is
    regular_size(path, "NIR file", missing=f"no such NIR file: {path}", error=NeuroKDError)
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise NeuroKDError(f"{path}: not a NIR file (not readable as HDF5: {describe(exc)})") from None
    with handle:
        try:
            _check_open(handle, path)
        except (RuntimeError, KeyError, ValueError, OSError) as exc:  # h5py on damaged trees
            raise NeuroKDError(f"{path}: not a readable NIR file ({describe(exc)})") from None


def _check_open(handle, path: Path) -> None:
    import h5py

    graph = handle.get("node")
    if not isinstance(graph, h5py.Group) or _type_of(graph) != "NIRGraph":
        raise NeuroKDError(f"{path}: not a NIR file (no 'node' group of type NIRGraph)")
    nodes = graph.get("nodes")
    if not isinstance(nodes, h5py.Group) or len(nodes) > MAX_NODES:
        raise NeuroKDError(f"{path}: a NIR graph needs a 'nodes' group of at most "
                           f"{MAX_NODES} nodes")
    problems = []
    for name, node in nodes.items():
        kind = _type_of(node) if isinstance(node, h5py.Group) else None
        if kind == "NIRGraph":
            problems.append(f"node {name!r} is a subgraph (NIRGraph; snnTorch writes "
                            "recurrent layers this way): neurokd reads flat feed-forward "
                            "graphs")
        elif kind not in READ_TYPES:
            problems.append(f"node {name!r} has type {kind!r}, which neurokd does not read "
                            f"(it reads {', '.join(READ_TYPES)})")
    if problems:
        raise NeuroKDError(f"{path}: {'; '.join(problems)}")
    check_hdf5_tree(handle, path)  # no links, no outside storage; sizes within budget


def _type_of(group) -> str | None:
    kind = group.get("type")
    if kind is None or getattr(kind, "shape", None) != ():
        return None
    value = kind[()]
    return value.decode("utf8", "replace") if isinstance(value, bytes) else str(value)


def _check_values(graph, label: str) -> None:
    """Every node's parameters finite, every neuron's threshold > 0 (NaN weights would run,
    silently, into NaN logits)."""
    for name, node in graph.nodes.items():
        for key, value in vars(node).items():
            value = array(value) if hasattr(value, "detach") else value  # in-memory graphs
            if isinstance(value, np.ndarray) and value.dtype.kind in "cV":  # complex, records
                raise NeuroKDError(f"{label}: node {name!r} ({type(node).__name__}) {key} "
                                   f"holds {value.dtype} values, not real numbers")
            if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiub":
                continue
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise NeuroKDError(f"{label}: node {name!r} ({type(node).__name__}) {key} "
                                   "holds NaN or infinite values")
            if key == "v_threshold" and value.size and value.min() <= 0:
                raise NeuroKDError(f"{label}: node {name!r} ({type(node).__name__}) "
                                   f"v_threshold must be > 0, not {value.min():g}")


def _metadata(graph, label: str) -> dict[str, Any]:
    found = {}
    for key, value in (getattr(graph, "metadata", None) or {}).items():
        value = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        value = value.item() if isinstance(value, np.generic) else value
        if isinstance(value, np.ndarray) and key in ("dataset", "data_dir", "producer"):
            raise NeuroKDError(f"{label}: metadata {key!r} is an array of shape {value.shape}, "
                               "not a name")
        found[str(key)] = value
    return found


def _dt(metadata: dict, rule: NirConvention, dt: float | None, label: str) -> float:
    chosen = dt if dt is not None else (metadata.get("dt") if rule.uses_metadata_dt else None)
    if chosen is None:
        return rule.default_dt
    try:
        chosen = float(np.asarray(chosen).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        raise NeuroKDError(f"{label}: dt in the metadata is not a number: {chosen!r}") from None
    if not (math.isfinite(chosen) and chosen > 0):
        raise NeuroKDError(f"{label}: dt must be a positive number of seconds, not {chosen}")
    return chosen


def _timesteps(metadata: dict, timesteps: int | None, label: str) -> int:
    value = timesteps if timesteps is not None else metadata.get("timesteps")
    if value is None:
        raise NeuroKDError(f"{label}: the graph's metadata has no timesteps (snnTorch, Norse "
                           "and spikingjelly do not write it): give --timesteps T")
    try:
        steps = int(np.asarray(value).reshape(-1)[0])
    except (TypeError, ValueError, IndexError, OverflowError):
        raise NeuroKDError(f"{label}: timesteps in the metadata is not a number: "
                           f"{value!r}") from None
    if not 1 <= steps <= MAX_STEPS:
        raise NeuroKDError(f"{label}: timesteps must be in 1..{MAX_STEPS}, not {steps}")
    return steps


def _structure(graph, label: str) -> tuple[list[str], dict[str, list[str]]]:
    """Execution order and each node's inputs; refuses what is not one feed-forward graph."""
    import nir

    names = set(graph.nodes)
    kinds = {n: type(v).__name__ for n, v in graph.nodes.items()}
    inputs = [n for n, v in graph.nodes.items() if isinstance(v, nir.Input)]
    outputs = [n for n, v in graph.nodes.items() if isinstance(v, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise NeuroKDError(f"{label}: neurokd reads graphs with one Input and one Output node, "
                           f"this one has {len(inputs)} and {len(outputs)}")
    sources: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for edge in graph.edges:
        src, dst = (str(e) for e in edge)
        if src not in names or dst not in names:
            missing = src if src not in names else dst
            raise NeuroKDError(f"{label}: edge {src} -> {dst} names node {missing!r}, which "
                               "is not in the graph")
        if dst == inputs[0] or src == outputs[0]:
            raise NeuroKDError(f"{label}: edge {src} -> {dst} leads into the Input or out of "
                               "the Output node")
        sources[dst].append(src)
    try:
        order = list(TopologicalSorter(sources).static_order())
    except CycleError as exc:
        cycle = exc.args[1]
        raise NeuroKDError(f"{label}: recurrent edge {cycle[-2]} -> {cycle[-1]} (a cycle "
                           f"{' -> '.join(cycle)}): neurokd reads feed-forward graphs") from None
    _require_connected(sources, inputs[0], outputs[0], kinds, label)
    return order, sources


def _require_connected(sources: dict[str, list[str]], start: str, end: str,
                       kinds: dict[str, str], label: str) -> None:
    reached, stack = {end}, [end]
    while stack:
        for src in sources[stack.pop()]:
            if src not in reached:
                reached.add(src)
                stack.append(src)
    stray = [f"{n} ({kinds[n]})" for n in sources if n not in reached]
    if start not in reached:
        raise NeuroKDError(f"{label}: no path from the Input node {start!r} to the Output")
    if stray:
        raise NeuroKDError(f"{label}: nodes that do not lead to the Output: {', '.join(stray)}")
    for name in sources:
        if name != start and not sources[name]:
            raise NeuroKDError(f"{label}: node {name!r} ({kinds[name]}) has no input edge")


