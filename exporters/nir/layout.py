"""How a traced student's records become NIR nodes: the shape layout and the pool rewrites.

Two choices make the file readable by nir's type check and by the consumers (docs/nir.md):
a network whose tensors all have height 1 and whose convs slide only along the width is
written as what it is, 1-D (``Conv1d`` over ``(C, W)``: nir 1.0.8 types a ``1xk`` Conv2d
wrongly), and an average pool that feeds only convs/linears becomes a ``SumPool2d`` with
``1/k^2`` moved into their weights (Norse and Sinabs have no AvgPool2d).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from torch import nn

from neurokd.errors import NeuroKDError

from ..graph import LayerRecord, StudentGraph
from ..loihi.pool_fold import adaptive_window, pair


@dataclass
class Layout:
    """How the records become NIR nodes: the shape convention and the pool rewrites."""

    one_dimensional: bool                                          # drop the unit H axis
    weight_scale: dict[str, float] = field(default_factory=dict)   # record -> weight factor
    sum_pools: list[str] = field(default_factory=list)

    def shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (shape[0], shape[2]) if self.one_dimensional and len(shape) == 3 else shape


def nir_layout(graph: StudentGraph) -> Layout:
    layout = Layout(_one_row_network(graph))
    for pool in (r for r in graph.records if r.kind == "avgpool"):
        targets = _linear_consumers(graph, pool.name)
        if targets:
            kernel = pool_window(pool)[0]
            layout.sum_pools.append(pool.name)
            for target in targets:
                layout.weight_scale[target] = layout.weight_scale.get(target, 1.0) / math.prod(
                    kernel)
    if not layout.one_dimensional:
        odd = [f"{r.name} (kernel {tuple(r.module.kernel_size)})" for r in graph.records
               if r.kind == "conv" and isinstance(r.module, nn.Conv2d)
               and r.module.kernel_size[0] != r.module.kernel_size[1]]
        if odd:  # nir 1.0.8 Conv2d.__post_init__ takes weight.shape[2] for both kernel axes
            raise NeuroKDError("cannot export to NIR: non-square Conv2d kernels are typed wrongly "
                               "by nir 1.0.8 (it uses the kernel height for both axes, so "
                               f"nir.read rejects the file): {'; '.join(odd)}")
    return layout


def _one_row_network(graph: StudentGraph) -> bool:
    """True when every 3-D tensor has height 1 and every conv only slides along the width:
    the network is 1-D, and Conv1d over (C, W) is what nir types correctly."""
    if len(graph.input_shape) != 3 or graph.input_shape[1] != 1:
        return False
    for record in graph.records:
        if any(len(s) == 3 and s[1] != 1 for s in (record.input_shape, record.output_shape)):
            return False
        if record.kind == "avgpool":
            return False  # NIR has no AvgPool1d
        if record.kind == "conv":
            m = record.module
            if not isinstance(m, nn.Conv2d) or m.kernel_size[0] != 1 or padding_of(m)[0] != 0:
                return False
    return True


def _linear_consumers(graph: StudentGraph, name: str) -> list[str]:
    """The conv/linear records fed by ``name`` (through flattens), or [] if anything else is."""
    found: list[str] = []
    for consumer in graph.consumers(name):
        if consumer.kind == "flatten":
            further = _linear_consumers(graph, consumer.name)
            if not further:
                return []
            found += further
        elif consumer.kind in ("conv", "dense"):
            found.append(consumer.name)
        else:
            return []
    return found


def padding_of(module: nn.Module) -> tuple[int, ...]:
    """Explicit padding per spatial axis ('same'/'valid' as the numbers torch pads with)."""
    if isinstance(module.padding, str):
        both = module._reversed_padding_repeated_twice
        return tuple(both[::2][::-1])
    return tuple(module.padding)


def pool_window(record: LayerRecord) -> tuple[tuple[int, int], ...]:
    """(kernel, stride, padding) of an average pool, adaptive ones as their fixed window."""
    module = record.module
    if isinstance(module, nn.AdaptiveAvgPool2d):
        kernel = adaptive_kernel(record)
        return kernel, kernel, (0, 0)
    return pair(module.kernel_size), pair(module.stride or module.kernel_size), pair(module.padding)


def adaptive_kernel(record: LayerRecord) -> tuple[int, int] | None:
    return adaptive_window(record.module.output_size, *record.input_shape[-2:])
