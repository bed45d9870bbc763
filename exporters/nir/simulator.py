"""NIR's own semantics, simulated: the reference the NIR export is checked against.

Written from the NIR 1.0 node definitions alone (not from any consumer): every step evaluates
the nodes in topological order, a node's input is the sum of all edges into it, and the
neurons integrate their ODE with one forward-Euler step of ``dt`` from rest (``v = 0``):

- LIF ``tau dv/dt = (v_leak - v) + r I``; IF ``dv/dt = r I``;
- CubaLIF ``tau_syn dI_s/dt = -I_s + w_in I`` (first), then
  ``tau_mem dv/dt = (v_leak - v) + r I_s`` with the new ``I_s``;
- a spike when ``v > v_threshold``, then ``v = v_reset``.
"""

from __future__ import annotations

from graphlib import TopologicalSorter
from pathlib import Path

import nir
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neurokd.errors import NeuroKDError

NEURON_NODES = (nir.LIF, nir.IF, nir.CubaLIF)


class NirSimulator(nn.Module):
    """Runs a NIR graph for T steps of ``dt`` (forward Euler), the input held constant.

    ``forward(x, timesteps) -> (output [T, B, ...], {neuron node: spikes [T, B, ...]})``;
    ``x`` is one static input ``[B, *input shape]``.
    """

    SUPPORTED = (nir.Input, nir.Output, nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d,
                 nir.Flatten, nir.AvgPool2d, nir.SumPool2d, *NEURON_NODES)

    def __init__(self, graph: nir.NIRGraph, dt: float):
        super().__init__()
        unknown = [f"{n} ({type(v).__name__})" for n, v in graph.nodes.items()
                   if not isinstance(v, self.SUPPORTED)]
        if unknown:
            raise NeuroKDError(f"NIR simulation: unsupported nodes: {', '.join(unknown)}")
        self.nodes, self.dt = graph.nodes, float(dt)
        self.sources: dict[str, list[str]] = {name: [] for name in graph.nodes}
        for src, dst in graph.edges:
            self.sources[dst].append(src)
        self.order = list(TopologicalSorter(self.sources).static_order())
        self.outputs = [n for n, v in graph.nodes.items() if isinstance(v, nir.Output)]
        if len(self.outputs) != 1:
            raise NeuroKDError(f"NIR simulation: expected one output node, found "
                               f"{len(self.outputs)}")
        self.params = {name: _tensors(node, self.dt) for name, node in graph.nodes.items()}

    def forward(self, x: torch.Tensor, timesteps: int):
        state: dict[str, tuple[torch.Tensor, ...]] = {}
        outputs, spikes = [], {n: [] for n, v in self.nodes.items()
                               if isinstance(v, NEURON_NODES)}
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
            return torch.flatten(x, _batched(node.start_dim), _batched(node.end_dim))
        if isinstance(node, nir.AvgPool2d | nir.SumPool2d):
            kernel = _ints(node.kernel_size)
            out = F.avg_pool2d(x, kernel, _ints(node.stride), _ints(node.padding))
            return out * float(np.prod(kernel)) if isinstance(node, nir.SumPool2d) else out
        return self._neuron(name, node, p, x, state)

    @staticmethod
    def _neuron(name: str, node: nir.NIRNode, p: dict, x: torch.Tensor, state) -> torch.Tensor:
        zero = torch.zeros_like(x)  # NIR gives no initial state: rest at 0
        if isinstance(node, nir.CubaLIF):
            current, v = state.get(name, (zero, zero))
            current = current + p["syn_gain"] * (p["w_in"] * x - current)
            h = v + p["gain"] * ((p["v_leak"] - v) + p["r"] * current)
        else:
            current, v = None, state.get(name, (zero,))[0]
            if isinstance(node, nir.IF):  # dv/dt = r I
                h = v + p["gain"] * x
            else:  # LIF: tau dv/dt = (v_leak - v) + r I
                h = v + p["gain"] * ((p["v_leak"] - v) + p["r"] * x)
        fired = h > p["v_threshold"]  # NIR: z = 1 if v > v_threshold
        v = torch.where(fired, p["v_reset"].expand_as(h), h)
        state[name] = (v,) if current is None else (current, v)
        return fired.float()


def _batched(dim) -> int:
    """A NIR (batchless) dim as a dim of the batched tensor."""
    dim = int(dim)
    return dim + 1 if dim >= 0 else dim


def _tensors(node: nir.NIRNode, dt: float) -> dict[str, torch.Tensor]:
    """Node parameters as float32 tensors; the Euler gains (dt/tau, dt*r) taken in float64."""
    def f32(value) -> torch.Tensor:
        return torch.as_tensor(np.asarray(value, dtype=np.float64)).float()

    keys = ("weight", "bias", "r", "v_leak", "v_threshold", "v_reset", "w_in")
    found = {k: f32(getattr(node, k)) for k in keys if getattr(node, k, None) is not None}
    if isinstance(node, nir.LIF):
        found["gain"] = f32(dt / np.asarray(node.tau, dtype=np.float64))
    elif isinstance(node, nir.IF):
        found["gain"] = f32(dt * np.asarray(node.r, dtype=np.float64))
    elif isinstance(node, nir.CubaLIF):
        found["gain"] = f32(dt / np.asarray(node.tau_mem, dtype=np.float64))
        found["syn_gain"] = f32(dt / np.asarray(node.tau_syn, dtype=np.float64))
    return found


def _ints(value) -> tuple[int, ...] | int:
    array = np.atleast_1d(np.asarray(value)).astype(int)
    return tuple(int(v) for v in array) if array.size > 1 else int(array[0])


def load_nir_simulator(graph: nir.NIRGraph | str | Path, dt: float) -> NirSimulator:
    """The reference simulator of a NIR graph (an object or a file written by ``nir.write``)."""
    if isinstance(graph, str | Path):
        try:
            graph = nir.read(graph)
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise NeuroKDError(f"cannot read NIR file {graph}: {exc}") from None
    return NirSimulator(graph, dt)
