"""Checked NIR nodes as spikingjelly layers (multi-step), in one module that runs them in order.

Node by node: ``Affine``/``Linear`` -> ``layer.Linear`` (with/without bias), ``Conv1d``/
``Conv2d`` -> ``layer.Conv1d``/``Conv2d``, ``Flatten`` -> ``layer.Flatten`` (NIR's batchless dims
shifted by the batch axis), ``AvgPool2d`` -> ``layer.AvgPool2d``, ``SumPool2d`` -> the same
pool with ``k^2`` folded into the weights after it; ``LIF`` -> ``LIFNode`` with
``tau = tau_c / dt`` steps and ``r = 1`` as ``decay_input=True``, ``r = tau_c / dt`` (snnTorch)
as ``decay_input=False``, any other ``r`` folded into the weights before it; ``IF`` ->
``IFNode`` with ``r * dt`` folded likewise; ``CubaLIF`` -> ``CUBALIFNode`` with
``c_decay = 1 - dt/tau_syn``, ``v_decay = 1 - dt/tau_mem`` and ``r * w_in * dt^2 /
(tau_mem tau_syn)`` folded. A node's input is the sum of its edges (``+``). spikingjelly's
neurons hold one value per parameter: per-neuron values that differ are refused, naming the
node; so are ``v_leak != v_reset`` (spikingjelly leaks towards ``v_reset``) and a scale with
no synapse to fold into.
"""

from __future__ import annotations

import re

import numpy as np
import torch
from spikingjelly.activation_based import layer, neuron
from torch import nn

from ...data.encoding import DirectEncoding
from ...errors import NeuroKDError
from .shapes import NEURON_PARAMS, Shapes, array, conv_padding, flatten_range, ints

SYNAPSES = ("Affine", "Linear", "Conv1d", "Conv2d")
LINEAR_PASSES = ("Flatten", "AvgPool2d", "SumPool2d")  # linear, no bias: a scale passes them


class NirModule(nn.Module):
    """``[T, B, *input] -> [T, B, ...]``: every node's layer on the sum of its inputs, in order."""

    def __init__(self, modules: dict[str, nn.Module], plan: list[tuple[str, tuple[str, ...]]],
                 output: str):
        super().__init__()
        for name, module in modules.items():
            self.add_module(name, module)
        self.plan, self.output = plan, output

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        values = {"": x_seq}
        for name, sources in self.plan:
            value = values[sources[0]]
            for source in sources[1:]:
                value = value + values[source]
            module = self._modules.get(name)
            values[name] = value if module is None else module(value)
        return values[self.output]


def build_network(graph, order, sources, shapes: Shapes, rule, dt: float, steps: int,
                  label: str, notes: list[str]) -> tuple[nn.Module, dict[str, str]]:
    attrs = _attribute_names(order)
    kinds = {n: type(graph.nodes[n]).__name__ for n in order}
    modules, problems, scales = {}, [], {}
    for name in order:
        if kinds[name] in ("Input", "Output"):
            continue
        try:
            modules[name], scale = _layer(graph.nodes[name], kinds[name], shapes, name, rule, dt)
        except ValueError as exc:
            problems.append(f"node {name!r} ({kinds[name]}): {exc}")
            continue
        if scale != 1.0:
            scales[name] = scale
    if problems:
        raise NeuroKDError(f"{label}: {'; '.join(problems)}")
    consumers = {n: [m for m in order if n in sources[m]] for n in order}
    folder = _Folder(modules, kinds, sources, consumers, label)
    for name, scale in scales.items():
        if kinds[name] == "SumPool2d":
            folder.forward(name, scale)
        else:
            folder.back(name, scale)
    if scales:
        notes.append("scales folded into the weights: " + ", ".join(
            f"{n} x{s:.6g}" for n, s in scales.items()))
    start = next(n for n in order if kinds[n] == "Input")
    end = next(n for n in order if kinds[n] == "Output")
    names = {n: ("" if n == start else attrs[n]) for n in order}
    plan = [(names[n], tuple(names[s] for s in sources[n])) for n in order if n != start]
    body = NirModule({attrs[n]: m for n, m in modules.items()}, plan, names[end]).eval()
    return DirectEncoding(body, shapes.input_shape, steps).eval(), {n: attrs[n] for n in modules}


def _attribute_names(order: list[str]) -> dict[str, str]:
    """Node names as module attribute names (identifiers that shadow nothing), unique."""
    found: dict[str, str] = {}
    for name in order:
        base = re.sub(r"\W", "_", name) or "node"
        base = f"n{base}" if base[0].isdigit() else base
        base = f"{base}_" if hasattr(NirModule, base) or base in ("plan", "output") else base
        attr, k = base, 1
        while attr in found.values():
            attr, k = f"{base}_{k}", k + 1
        found[name] = attr
    return found


def _layer(node, kind: str, shapes: Shapes, name: str, rule, dt: float
           ) -> tuple[nn.Module, float]:
    """The layer of one node and the factor on its input still to fold (1.0: none)."""
    if kind in ("Affine", "Linear"):
        weight = array(node.weight)
        linear = layer.Linear(weight.shape[1], weight.shape[0], bias=kind == "Affine",
                              step_mode="m")
        _set(linear, weight, array(node.bias) if kind == "Affine" else None)
        return linear, 1.0
    if kind in ("Conv1d", "Conv2d"):
        return _conv(node, kind, shapes.one_row), 1.0
    if kind == "Flatten":
        rank = len(shapes.inputs[name])
        start, end = flatten_range(node, rank)
        if shapes.one_row:  # (C, W) is (C, 1, W) in the model: W is its axis 2
            start, end, rank = (0, 2)[start], (0, 2)[end], 3
        return layer.Flatten(start + 1, end + 1, step_mode="m"), 1.0  # + the batch axis
    if kind in ("AvgPool2d", "SumPool2d"):
        kernel = ints(node.kernel_size, 2, 1)
        pool = layer.AvgPool2d(kernel, ints(node.stride, 2, 1), ints(node.padding, 2, 0),
                               step_mode="m")
        return pool, float(np.prod(kernel)) if kind == "SumPool2d" else 1.0
    return _neuron(node, kind, rule, dt)


def _set(module: nn.Module, weight: np.ndarray, bias: np.ndarray | None) -> None:
    with torch.no_grad():
        module.weight.copy_(torch.as_tensor(weight.astype(np.float32)).reshape(
            module.weight.shape))
        if module.bias is not None:
            module.bias.copy_(torch.as_tensor(np.zeros(module.weight.shape[0], np.float32)
                                              if bias is None else bias.astype(np.float32)))


def _conv(node, kind: str, one_row: bool) -> nn.Module:
    weight = array(node.weight)
    dims = weight.ndim - 2
    groups = int(np.asarray(array(node.groups)).reshape(-1)[0])
    stride, dilation = ints(node.stride, dims, 1), ints(node.dilation, dims, 1)
    padding = conv_padding(node.padding, weight.shape[2:], dilation, dims)
    channels = (weight.shape[1] * groups, weight.shape[0])
    if kind == "Conv1d" and one_row:  # a 1xk Conv2d of neurokd's own 1-D students
        conv = layer.Conv2d(*channels, (1, weight.shape[2]), (1, stride[0]), (0, padding[0]),
                            (1, dilation[0]), groups, bias=True, step_mode="m")
    else:
        cls = layer.Conv1d if kind == "Conv1d" else layer.Conv2d
        conv = cls(*channels, weight.shape[2:], stride, padding, dilation, groups, bias=True,
                   step_mode="m")
    _set(conv, weight, None if node.bias is None else array(node.bias))
    return conv


def _uniform(node, kind: str) -> dict[str, float]:
    values = {}
    for key in NEURON_PARAMS:
        value = getattr(node, key, None)
        if value is None:
            continue
        flat = array(value).astype(np.float64).reshape(-1)
        if flat.size == 0 or not np.all(np.isfinite(flat)):
            raise ValueError(f"{key} holds no finite value")
        if np.any(flat != flat[0]):
            raise ValueError(f"per-neuron {key} ({flat.min():g} .. {flat.max():g}): "
                             "spikingjelly's neurons take one value per layer")
        values[key] = float(flat[0])
    return values


def _neuron(node, kind: str, rule, dt: float) -> tuple[nn.Module, float]:
    p = _uniform(node, kind)
    reset = p.get("v_reset", 0.0)
    if kind == "IF":
        return neuron.IFNode(p["v_threshold"], reset, step_mode="m"), rule.if_gain(p["r"], dt)
    if kind == "CubaLIF":
        if rule.name == "norse":
            raise ValueError("Norse's LIFCell adds its input to the current after the voltage "
                             "step, a step later than NIR's CubaLIF: not reproducible")
        tau_syn, tau_mem = (_steps(rule, p[k], dt, k) for k in ("tau_syn", "tau_mem"))
        if not np.isclose(p["v_leak"], 0.0):
            raise ValueError(f"v_leak = {p['v_leak']:g}: spikingjelly's CUBALIFNode leaks to 0")
        cell = neuron.CUBALIFNode(1.0 - 1.0 / tau_syn, 1.0 - 1.0 / tau_mem, p["v_threshold"],
                                  reset)
        cell.step_mode = "m"
        return cell, p["r"] * p["w_in"] / (tau_mem * tau_syn)
    tau = _steps(rule, p["tau"], dt, "tau")
    if not np.isclose(p["v_leak"], reset):
        raise ValueError(f"v_leak = {p['v_leak']:g} != v_reset = {reset:g}: spikingjelly's LIF "
                         "leaks towards v_reset")
    plain = np.isclose(p["r"], 1.0, rtol=1e-6)
    unscaled = not plain and np.isclose(p["r"], tau, rtol=1e-6)  # snnTorch: r = tau / dt
    cell = neuron.LIFNode(tau, decay_input=not unscaled, v_threshold=p["v_threshold"],
                          v_reset=reset, step_mode="m")
    return cell, 1.0 if plain or unscaled else p["r"]


def _steps(rule, tau: float, dt: float, key: str) -> float:
    steps = rule.steps(tau, dt)
    if not steps > 1.0:
        hint = " (a Norse file? --nir-convention norse)" if rule.name == "nir" else ""
        raise ValueError(f"{key} = {tau:g} s is {steps:g} steps of dt = {dt:g} s; a discrete "
                         f"neuron needs more than 1{hint}")
    return steps


class _Folder:
    """Moves a scale on a node's input into the synapse weights around it, where that is exact."""

    def __init__(self, modules, kinds, sources, consumers, label: str):
        self.modules, self.kinds, self.sources, self.consumers = modules, kinds, sources, consumers
        self.label = label

    def back(self, name: str, scale: float) -> None:
        """Into the synapses feeding ``name`` (through flattens and pools)."""
        for src in self.sources[name]:
            if len(self.consumers[src]) != 1:
                self._refuse(name, scale, f"{src} feeds other nodes too")
            if self.kinds[src] in SYNAPSES:
                module = self.modules[src]
                with torch.no_grad():
                    module.weight.mul_(scale)
                    if module.bias is not None:
                        module.bias.mul_(scale)
            elif self.kinds[src] in LINEAR_PASSES:
                self.back(src, scale)
            else:
                self._refuse(name, scale, f"its input comes straight from {src} "
                             f"({self.kinds[src]}), no synapse")

    def forward(self, name: str, scale: float) -> None:
        """Into the weights (not the biases) of the synapses ``name`` feeds."""
        for dst in self.consumers[name]:
            if self.sources[dst] != [name]:
                self._refuse(name, scale, f"{dst} also sums other inputs")
            if self.kinds[dst] in SYNAPSES:
                with torch.no_grad():
                    self.modules[dst].weight.mul_(scale)
            elif self.kinds[dst] == "Flatten":
                self.forward(dst, scale)
            else:
                self._refuse(name, scale, f"it feeds {dst} ({self.kinds[dst]}), no synapse")

    def _refuse(self, name: str, scale: float, why: str) -> None:
        raise NeuroKDError(f"{self.label}: node {name!r} ({self.kinds[name]}) scales its input "
                           f"by {scale:.6g}, which neurokd folds into a neighbouring synapse, "
                           f"but {why}")
