"""Shapes through a NIR graph, inferred by neurokd and checked against every node's weights.

nir's own type inference is not used: it types a non-square ``Conv2d`` kernel wrongly, and
graphs of other producers often carry no or wrong types (Norse and Rockpool put the batch axis
in the Input type). Shapes here are per sample, without the batch axis, as NIR defines them.
Any inconsistency is one error naming the node; every size is bounded before a model is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ...errors import NeuroKDError

READ_TYPES = ("Input", "Output", "Affine", "Linear", "Conv1d", "Conv2d", "Flatten",
              "AvgPool2d", "SumPool2d", "LIF", "IF", "CubaLIF")
NEURON_TYPES = ("LIF", "IF", "CubaLIF")
NEURON_PARAMS = ("tau", "r", "v_leak", "v_threshold", "v_reset", "tau_syn", "tau_mem", "w_in")
MAX_SAMPLE_ELEMENTS = 1 << 26  # per layer and sample: 256 MiB of float32
MAX_RANK = 4


@dataclass
class Shapes:
    """Per-sample shapes in the graph's own layout (no batch axis)."""

    input_shape: tuple[int, ...]                 # what the model takes
    inputs: dict[str, tuple[int, ...]] = field(default_factory=dict)
    outputs: dict[str, tuple[int, ...]] = field(default_factory=dict)
    one_row: bool = False  # neurokd's 1-D form: Conv1d over (C, W) of a (C, 1, W) input


def array(value) -> np.ndarray:
    """A parameter as a numpy array (graphs built in memory may hold torch tensors)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def infer_shapes(graph, order: list[str], sources: dict[str, list[str]],
                 input_shape: tuple[int, ...] | None, metadata: dict, label: str,
                 notes: list[str]) -> Shapes:
    start = next(n for n in order if type(graph.nodes[n]).__name__ == "Input")
    declared = _declared_input(graph.nodes[start], label)
    shape = tuple(input_shape) if input_shape else declared
    if input_shape and tuple(input_shape) != declared:
        notes.append(f"input shape {tuple(input_shape)} given; the Input node says {declared}")
    try:
        shapes = _walk(graph, order, sources, start, _checked_shape(shape, start, label), label)
    except NeuroKDError as first:
        if input_shape or len(shape) < 2 or shape[0] != 1:
            raise
        try:
            shapes = _walk(graph, order, sources, start, shape[1:], label)  # a batch axis of 1
        except NeuroKDError:
            # not a batch axis either: the fault is the one found in the graph as written
            raise first from None
        notes.append(f"the Input node's shape {shape} includes a batch axis (Norse and Rockpool "
                     f"write it): read as {shape[1:]}")
    stated = metadata.get("input_shape")
    if stated is not None and metadata.get("producer") == "neurokd":
        stated = tuple(int(d) for d in np.atleast_1d(array(stated)))
        flat = shapes.input_shape
        if len(stated) == 3 and stated[1] == 1 and (stated[0], stated[2]) == flat:
            shapes.one_row, shapes.input_shape = True, stated
    return shapes


def _declared_input(node, label: str) -> tuple[int, ...]:
    value = (getattr(node, "input_type", None) or {}).get("input")
    if value is None:
        raise NeuroKDError(f"{label}: the Input node has no shape: give --input-shape")
    try:
        return tuple(int(d) for d in np.atleast_1d(array(value)))
    except (TypeError, ValueError):
        raise NeuroKDError(f"{label}: the Input node's shape is not a list of sizes: "
                           f"{value!r}") from None


def _checked_shape(shape: tuple[int, ...], name: str, label: str) -> tuple[int, ...]:
    if not 1 <= len(shape) <= MAX_RANK or min(shape) < 1 or \
            math.prod(shape) > MAX_SAMPLE_ELEMENTS:
        raise NeuroKDError(f"{label}: node {name!r} would hold per-sample shape {shape}: "
                           f"sizes must be >= 1, at most {MAX_RANK} axes and "
                           f"{MAX_SAMPLE_ELEMENTS:,} values")
    return shape


def _walk(graph, order, sources, start: str, shape: tuple[int, ...], label: str) -> Shapes:
    shapes = Shapes(shape)
    shapes.outputs[start] = shape
    for name in order:
        if name == start:
            continue
        incoming = {src: shapes.outputs[src] for src in sources[name]}
        if len(set(incoming.values())) > 1:
            parts = ", ".join(f"{s} from {src}" for src, s in incoming.items())
            raise NeuroKDError(f"{label}: node {name!r} sums inputs of different shapes: {parts}")
        shape_in = next(iter(incoming.values()))
        node = graph.nodes[name]
        shapes.inputs[name] = shape_in
        try:
            out = _output_shape(node, shape_in)
        except (ValueError, TypeError, IndexError, OverflowError) as exc:
            raise NeuroKDError(f"{label}: node {name!r} ({type(node).__name__}): {exc}") from None
        shapes.outputs[name] = _checked_shape(out, name, label)
    return shapes


def _output_shape(node, shape: tuple[int, ...]) -> tuple[int, ...]:
    kind = type(node).__name__
    if kind in ("Affine", "Linear"):
        weight = array(node.weight)
        if weight.ndim != 2 or shape != (weight.shape[1],):
            raise ValueError(f"weight {weight.shape} takes ({weight.shape[-1]},) inputs, gets "
                             f"{shape}")
        if kind == "Affine" and array(node.bias).shape != (weight.shape[0],):
            raise ValueError(f"bias {array(node.bias).shape} does not fit weight {weight.shape}")
        return (weight.shape[0],)
    if kind in ("Conv1d", "Conv2d"):
        return _conv_shape(node, shape, 1 if kind == "Conv1d" else 2)
    if kind == "Flatten":
        start, end = flatten_range(node, len(shape))
        return shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:]
    if kind in ("AvgPool2d", "SumPool2d"):
        if len(shape) != 3:
            raise ValueError(f"pools take (C, H, W) inputs, gets {shape}")
        kernel, stride = ints(node.kernel_size, 2, 1), ints(node.stride, 2, 1)
        padding = ints(node.padding, 2, 0)
        return (shape[0], *(_size(n, k, s, p, 1) for n, k, s, p in
                            zip(shape[1:], kernel, stride, padding, strict=True)))
    if kind in NEURON_TYPES:
        for key in NEURON_PARAMS:
            value = getattr(node, key, None)
            if value is not None and array(value).shape not in ((), (1,), shape):
                raise ValueError(f"{key} has shape {array(value).shape}, its input {shape}")
    return shape


def _conv_shape(node, shape: tuple[int, ...], dims: int) -> tuple[int, ...]:
    weight, groups = array(node.weight), int(np.asarray(array(node.groups)).reshape(-1)[0])
    if weight.ndim != dims + 2 or len(shape) != dims + 1:
        raise ValueError(f"weight {weight.shape} and input {shape} do not make a {dims}-D conv")
    if groups < 1 or shape[0] != weight.shape[1] * groups or weight.shape[0] % groups:
        raise ValueError(f"weight {weight.shape} with groups={groups} takes "
                         f"{weight.shape[1] * groups} channels, gets {shape[0]}")
    if node.bias is not None and array(node.bias).shape != (weight.shape[0],):
        raise ValueError(f"bias {array(node.bias).shape} does not fit weight {weight.shape}")
    stride, dilation = ints(node.stride, dims, 1), ints(node.dilation, dims, 1)
    kernel = weight.shape[2:]
    padding = conv_padding(node.padding, kernel, dilation, dims)
    return (weight.shape[0], *(_size(n, k, s, p, d) for n, k, s, p, d in
                               zip(shape[1:], kernel, stride, padding, dilation, strict=True)))


def conv_padding(value, kernel, dilation, dims: int) -> tuple[int, ...]:
    """Explicit padding per axis; ``'valid'`` is 0, ``'same'`` (odd kernels) half the reach."""
    value = value.decode() if isinstance(value, bytes) else value
    if isinstance(value, np.ndarray) and value.dtype.kind in "SUO":
        value = value.reshape(-1)[0]
        value = value.decode() if isinstance(value, bytes) else str(value)
    if isinstance(value, str):
        if value == "valid":
            return (0,) * dims
        reach = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
        if value != "same" or any(r % 2 for r in reach):
            raise ValueError(f"padding {value!r} (only 'valid', and 'same' with odd kernels)")
        return tuple(r // 2 for r in reach)
    return ints(value, dims, 0)


def ints(value, count: int, minimum: int) -> tuple[int, ...]:
    """A size argument (one number or ``count`` of them) as ``count`` ints >= ``minimum``."""
    flat = np.atleast_1d(array(value)).reshape(-1)
    if flat.size not in (1, count) or flat.dtype.kind not in "iuf" or \
            not np.all(flat == np.round(flat)):
        raise ValueError(f"expected {count} whole numbers, got {value!r}")
    found = tuple(int(v) for v in (np.repeat(flat, count) if flat.size == 1 else flat))
    if min(found) < minimum or max(found) > 1 << 20:
        raise ValueError(f"sizes {found} must be in {minimum}..{1 << 20}")
    return found


def flatten_range(node, rank: int) -> tuple[int, int]:
    """NIR Flatten dims (batchless, negative allowed) as ``0 <= start <= end < rank``."""
    start, end = (int(np.asarray(array(d)).reshape(-1)[0]) for d in (node.start_dim,
                                                                     node.end_dim))
    start, end = (d + rank if d < 0 else d for d in (start, end))
    if not 0 <= start <= end < rank:
        raise ValueError(f"start_dim {node.start_dim} / end_dim {node.end_dim} do not fit an "
                         f"input of {rank} axes")
    return start, end


def _size(n: int, k: int, s: int, p: int, d: int) -> int:
    out = (n + 2 * p - d * (k - 1) - 1) // s + 1
    if out < 1:
        raise ValueError(f"a kernel of {k} (dilation {d}, padding {p}) does not fit {n} inputs")
    return out
