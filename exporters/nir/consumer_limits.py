"""What each NIR consumer cannot represent or computes differently, named by node.

Each function takes a NIR graph (and the dt it is meant for) and returns one line per gap that
applies to *this* graph. The facts were measured with snnTorch 1.0.0, Norse 1.1.0,
spikingjelly 2.0.0, Sinabs 3.1.3 and Rockpool 3.1.0 against NIR's forward-Euler semantics
(docs/nir.md lists them with the exact errors); the check itself still runs every library, so
a gap that a newer release fixed shows up as agreement next to a stale note, never the other
way round.
"""

from __future__ import annotations

import nir
import numpy as np

SNNTORCH_DT = 1e-4  # snntorch/import_nir.py: dt = 1e-4, whatever the file says


def _named(graph: nir.NIRGraph, kinds) -> list[str]:
    return [name for name, node in graph.nodes.items() if isinstance(node, kinds)]


def _nodes_where(graph: nir.NIRGraph, kinds, test) -> list[str]:
    return [name for name, node in graph.nodes.items()
            if isinstance(node, kinds) and test(node)]


def _line(names: list[str], text: str) -> list[str]:
    return [f"{text}: {', '.join(names)}"] if names else []


def _uniform(value) -> bool:
    array = np.asarray(value, dtype=np.float64)
    return array.size == 0 or bool(np.all(array == array.flat[0]))


def _close(value, expected) -> bool:
    return bool(np.allclose(np.asarray(value, dtype=np.float64), expected, rtol=1e-6))


def _flatten_from_batch(graph: nir.NIRGraph) -> list[str]:
    """Flattens with a non-negative start dim, which snnTorch and Norse hand to
    ``torch.nn.Flatten`` unchanged: on the batched tensor they flatten the wrong axes."""
    return _nodes_where(graph, nir.Flatten, lambda n: int(n.start_dim) >= 0)


def depth_first_gaps(graph: nir.NIRGraph) -> list[str]:
    """nirtorch's old ``GraphExecutor`` (Norse, Sinabs, Rockpool) runs the nodes in depth-first
    pre-order along the edge list and returns the last node it visits. A node visited before
    one of its inputs gets that input's value from the previous step; a graph whose last visit
    is not the output returns the wrong tensor."""
    children: dict[str, list[str]] = {name: [] for name in graph.nodes}
    sources: dict[str, list[str]] = {name: [] for name in graph.nodes}
    for src, dst in graph.edges:
        children[src].append(dst)
        sources[dst].append(src)
    start = next((n for n, v in graph.nodes.items() if isinstance(v, nir.Input)), None)
    if start is None:
        return []
    order: list[str] = []
    stack = [start]
    while stack:
        node = stack.pop()
        if node in order:
            continue
        order.append(node)
        stack.extend(reversed([c for c in children[node] if c not in order]))
    position = {n: k for k, n in enumerate(order)}
    late = [f"{n} (its input {s})" for n in order for s in sources[n]
            if position.get(s, len(order)) > position[n]]
    gaps = _line(late, "nirtorch's depth-first GraphExecutor computes these nodes before one "
                       "of their inputs, which then arrives one step late")
    if order and not isinstance(graph.nodes[order[-1]], nir.Output):
        gaps.append(f"nirtorch's GraphExecutor returns the last node it visits, {order[-1]}, "
                    "instead of the graph's output")
    return gaps


def snntorch_limits(graph: nir.NIRGraph, dt: float) -> list[str]:
    gaps = _line(_named(graph, nir.IF), "IF has no working import in snnTorch 1.0 (it "
                 "asserts r == 1, then its Leaky returns a tuple: TypeError)")
    gaps += _line(_nodes_where(graph, nir.LIF, lambda n: not _close(n.v_leak, 0.0)),
                  "v_leak != 0 is refused (AssertionError: v_leak not supported)")
    gaps += _line(_nodes_where(graph, nir.LIF, lambda n: not _uniform(n.tau)),
                  "per-neuron tau: snnTorch scales thresholds by the first value only (wrong)")
    gaps += _line(_nodes_where(graph, nir.LIF | nir.CubaLIF,
                               lambda n: not _uniform(n.v_threshold)),
                  "per-neuron thresholds are refused (AssertionError)")
    gaps += _line(_nodes_where(graph, nir.LIF | nir.IF | nir.CubaLIF,
                               lambda n: not _close(n.v_reset, 0.0)),
                  "v_reset is ignored (snnTorch resets to 0)")
    gaps += _line(_flatten_from_batch(graph), "Flatten dims >= 0 are used on the batched "
                  "tensor (mat1 and mat2 shapes cannot be multiplied at batch > 1)")
    if not np.isclose(dt, SNNTORCH_DT):
        gaps.append(f"snnTorch's import assumes dt = {SNNTORCH_DT:g} s; this graph is meant "
                    f"for dt = {dt:g} s")
    return gaps


def norse_limits(graph: nir.NIRGraph, dt: float) -> list[str]:
    gaps = _line(_named(graph, nir.Conv1d | nir.AvgPool2d),
                 "not mapped by Norse 1.1, dropped without an error (wrong output)")
    gaps += _line(_nodes_where(graph, nir.LIF, lambda n: not _close(n.r, 1.0)),
                  "Norse ignores LIF r (assumes r = 1)")
    gaps += _line(_nodes_where(graph, nir.IF, lambda n: not _close(np.asarray(n.r) * dt, 1.0)),
                  "Norse integrates IF as v += I (r = 1/dt only)")
    gaps += _line(_nodes_where(graph, nir.LIF | nir.IF, lambda n: not _close(n.v_reset, 0.0)),
                  "v_reset is ignored (Norse resets to 0)")
    gaps += _line(_nodes_where(graph, nir.LIF, lambda n: not _close(n.v_leak, 0.0)),
                  "Norse starts the membrane at v_leak, not at rest")
    gaps += _line(_flatten_from_batch(graph), "Flatten dims >= 0 are used on the batched tensor")
    return gaps + depth_first_gaps(graph)


def spikingjelly_limits(graph: nir.NIRGraph, dt: float) -> list[str]:
    neurons = nir.LIF | nir.IF | nir.CubaLIF
    params = ("tau", "r", "v_leak", "v_threshold", "v_reset", "tau_syn", "tau_mem", "w_in")
    gaps = _line(_nodes_where(graph, nir.Conv1d | nir.Conv2d, lambda n: int(n.groups) != 1),
                 "grouped convolutions are refused (NotImplementedError)")
    gaps += _line(_nodes_where(graph, neurons, lambda n: not all(
        _uniform(getattr(n, p)) for p in params if getattr(n, p, None) is not None)),
        "per-neuron parameters are refused (ValueError: must be uniform across all neurons)")
    gaps += _line(_nodes_where(graph, nir.LIF, lambda n: not (
        _close(n.r, 1.0) or _close(n.r, np.asarray(n.tau) / dt))),
        "LIF r must be 1 or tau/dt (ValueError)")
    gaps += _line(_nodes_where(graph, nir.IF, lambda n: not _close(np.asarray(n.r) * dt, 1.0)),
                  "IF r must be 1/dt (ValueError)")
    gaps += _line(_nodes_where(graph, nir.LIF, lambda n: not _close(n.v_leak, n.v_reset)),
                  "v_leak must equal v_reset (ValueError)")
    return gaps


def sinabs_limits(graph: nir.NIRGraph, dt: float) -> list[str]:
    gaps = _line(_named(graph, nir.LIF), "Sinabs runs LIF with tau counted in time steps "
                 "(alpha = exp(-1/tau)), several spikes per step and reset by subtracting the "
                 "threshold: another neuron model than NIR's LIF")
    gaps += _line(_named(graph, nir.IF), "Sinabs runs IF as IAF: several spikes per step, reset "
                  "by subtracting the threshold, v clamped at -threshold: equal to NIR's IF only "
                  "while v stays in (-threshold, 2 threshold) and lands on 0 after each spike")
    gaps += _line(_nodes_where(graph, nir.LIF, lambda n: np.ndim(n.v_leak) > 1),
                  "multi-dimensional LIF parameter arrays fail (ValueError: The truth value of "
                  "an array with more than one element is ambiguous)")
    gaps += _line(_named(graph, nir.Linear), "nir.Linear is not mapped (KeyError)")
    gaps += _line(_named(graph, nir.AvgPool2d | nir.CubaLIF),
                  "not mapped, dropped without an error (wrong output)")
    gaps += _line(_named(graph, nir.Conv1d), "Conv1d fails (AttributeError: 'numpy.ndarray' "
                  "object has no attribute 'detach')")
    return gaps + depth_first_gaps(graph)


def rockpool_limits(graph: nir.NIRGraph, dt: float) -> list[str]:
    gaps = _line(_named(graph, nir.Conv1d | nir.Conv2d | nir.Flatten | nir.AvgPool2d
                        | nir.SumPool2d | nir.IF),
                 "no Rockpool module for these (NotImplementedError: Cannot convert)")
    gaps += _line(_named(graph, nir.LIF), "Rockpool 3.1's LIF import is broken (AttributeError: "
                  "'LIF' object has no attribute 'tau_mem')")
    gaps += _line(_named(graph, nir.CubaLIF), "CubaLIF runs as Rockpool's LIFTorch: exponential "
                  "decay with its own dt (min tau_mem / (1 + r)), not NIR's Euler step")
    return gaps + depth_first_gaps(graph)
