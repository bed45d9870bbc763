"""Average pooling folded into the conv or linear layer after it (netx has no pooling layer).

Averaging is linear, so ``conv(avgpool_k(x))`` is one conv on ``x``: every tap of the kernel
becomes a ``k x k`` block of ``w / k^2``, stride and padding are multiplied by ``k``. Likewise
``linear(flatten(avgpool_k(x)))`` is one linear layer on ``flatten(x)`` whose weights are spread
over each pooling window. Only non-overlapping windows (stride = kernel, no padding, no
``ceil_mode``) fold; an adaptive pool folds when its output divides the input. Max pooling
never folds. What does not fold stays in the graph and the exporter refuses it by name.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ..graph import LayerRecord, StudentGraph


def fold_average_pools(graph: StudentGraph) -> tuple[StudentGraph, list[str]]:
    """A copy with every foldable average pool merged into its consumer, and their names."""
    records = [copy.copy(r) for r in graph.records]
    folded: list[str] = []
    for pool in [r for r in records if r.kind == "avgpool"]:
        kernel = _window(pool)
        consumers = [r for r in records if pool.name in r.inputs]
        if kernel is None or len(consumers) != 1:
            continue
        via, target = None, consumers[0]
        if target.kind == "flatten":
            after = [r for r in records if target.name in r.inputs]
            via, target = target, (after[0] if len(after) == 1 else None)
        module = None
        if target is not None and target.kind == "conv" and via is None:
            module = _conv_over_pool(target.module, kernel, pool.input_shape)
        elif target is not None and target.kind == "dense" and via is not None:
            module = _linear_over_pool(target.module, kernel, pool.input_shape,
                                       pool.output_shape)
        if module is None:
            continue
        first = via or target
        first.inputs = tuple(pool.inputs)
        if via is not None:
            via.input_shape = pool.input_shape
            via.output_shape = (math.prod(pool.input_shape),)
        target.input_shape = via.output_shape if via is not None else pool.input_shape
        target.module = module
        folded.append(pool.name)
    kept = [r for r in records if r.name not in folded]
    return StudentGraph(kept, graph.input_shape, graph.timesteps), folded


def pair(value) -> tuple:
    """A torch size argument (int or pair) as a pair."""
    return tuple(value) if isinstance(value, tuple | list) else (value, value)


def adaptive_window(output_size, height: int, width: int) -> tuple[int, int] | None:
    """The window an adaptive average pool of ``output_size`` uses on a ``height x width``
    input when it is the same everywhere (the output divides the input), else None."""
    out_h, out_w = pair(output_size)
    out_h, out_w = out_h or height, out_w or width  # None keeps that size
    if height % out_h or width % out_w:
        return None
    return height // out_h, width // out_w


def _window(pool: LayerRecord) -> tuple[int, int] | None:
    """The non-overlapping window ``(kh, kw)`` the pool averages over, if it has one."""
    module = pool.module
    if len(pool.input_shape) != 3:
        return None
    _, height, width = pool.input_shape
    if isinstance(module, nn.AvgPool2d):
        kernel = pair(module.kernel_size)
        stride = pair(module.stride or module.kernel_size)
        plain = (pair(module.padding) == (0, 0) and not module.ceil_mode
                 and module.divisor_override is None)
        return kernel if plain and stride == kernel else None
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return adaptive_window(module.output_size, height, width)
    return None


def _conv_over_pool(conv: nn.Module, kernel: tuple[int, int],
                    in_shape: tuple[int, ...]) -> nn.Module | None:
    kh, kw = kernel
    if (not isinstance(conv, nn.Conv2d) or isinstance(conv.padding, str)
            or tuple(conv.dilation) != (1, 1) or conv.padding_mode != "zeros"
            or in_shape[1] % kh or in_shape[2] % kw):
        return None  # padding in the pooled image maps to the input only on whole windows
    weight = conv.weight.detach().repeat_interleave(kh, 2).repeat_interleave(kw, 3) / (kh * kw)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, tuple(weight.shape[2:]),
                      (conv.stride[0] * kh, conv.stride[1] * kw),
                      (conv.padding[0] * kh, conv.padding[1] * kw), groups=conv.groups,
                      bias=conv.bias is not None)
    with torch.no_grad():
        fused.weight.copy_(weight)
        if conv.bias is not None:
            fused.bias.copy_(conv.bias)
    return fused


def _linear_over_pool(linear: nn.Module, kernel: tuple[int, int], in_shape: tuple[int, ...],
                      pooled: tuple[int, ...]) -> nn.Module | None:
    if not isinstance(linear, nn.Linear) or linear.in_features != math.prod(pooled):
        return None
    kh, kw = kernel
    channels, height, width = in_shape
    weight = linear.weight.detach().reshape(linear.out_features, *pooled)
    spread = weight.repeat_interleave(kh, 2).repeat_interleave(kw, 3) / (kh * kw)
    full = torch.zeros(linear.out_features, channels, height, width, dtype=weight.dtype)
    full[:, :, :spread.shape[2], :spread.shape[3]] = spread  # rows the pool dropped: 0
    fused = nn.Linear(channels * height * width, linear.out_features,
                      bias=linear.bias is not None)
    with torch.no_grad():
        fused.weight.copy_(full.reshape(linear.out_features, -1))
        if linear.bias is not None:
            fused.bias.copy_(linear.bias)
    return fused
