"""The shape of one synaptic layer (conv or dense), shared by every part that prices or runs one.

The energy counter, Loihi's fixed-point model, the netx writer/reader, the ONNX simulation and
the spike-count result file all describe a layer with :class:`LayerGeometry`. A 1-D conv is a
2-D conv of height 1. Every size is checked on creation, so a geometry read from a file cannot
price negative or zero-sized outputs nor divide by a zero stride.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import NeuroKDError


@dataclass(frozen=True)
class LayerGeometry:
    """A synaptic layer's shape; conv1d is stored as a conv2d of height 1 (as in the npz)."""

    kind: str                       # "conv" | "dense"
    input_shape: tuple[int, ...]    # per sample and timestep: (C, H, W) or (N,)
    out_channels: int               # out_features for dense
    in_per_group: int = 0           # in_features for dense
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ("conv", "dense"):
            raise ValueError(f"layer kind must be conv or dense, not {self.kind!r}")
        if self.kind == "dense" and self.input_shape != (self.in_per_group,):
            raise ValueError(f"dense input shape {self.input_shape} != ({self.in_per_group},)")
        if self.kind == "conv" and (len(self.input_shape) != 3
                                    or self.input_shape[0] != self.in_per_group * self.groups):
            raise ValueError(f"conv input shape {self.input_shape} does not fit "
                             f"{self.in_per_group} channels x {self.groups} groups")
        # A geometry read from a file must not price negative or zero-sized outputs (negative
        # MACs) nor divide by a zero stride: every size is checked, not only the shapes.
        if min(self.input_shape, default=0) < 1 or self.out_channels < 1:
            raise ValueError(f"sizes must be >= 1: input {self.input_shape}, "
                             f"{self.out_channels} outputs")
        if min(*self.kernel, *self.stride, *self.dilation, self.groups) < 1 \
                or min(self.padding) < 0:
            raise ValueError(f"kernel {self.kernel}, stride {self.stride}, dilation "
                             f"{self.dilation} and groups {self.groups} must be >= 1, padding "
                             f"{self.padding} >= 0")
        if min(self.output_shape) < 1:
            raise ValueError(f"a {self.kernel} kernel (dilation {self.dilation}, padding "
                             f"{self.padding}) does not fit the input {self.input_shape}: "
                             f"output {self.output_shape}")

    @property
    def output_shape(self) -> tuple[int, ...]:
        if self.kind == "dense":
            return (self.out_channels,)
        sizes = [(n + 2 * p - d * (k - 1) - 1) // s + 1 for n, k, s, p, d in zip(
            self.input_shape[1:], self.kernel, self.stride, self.padding, self.dilation,
            strict=True)]
        return (self.out_channels, *sizes)

    @property
    def fan_in(self) -> int:
        return self.in_per_group * self.kernel[0] * self.kernel[1]

    @property
    def macs_per_frame(self) -> int:
        """Dense multiply-accumulates of one timestep of one sample: fan-in x outputs."""
        return self.fan_in * math.prod(self.output_shape)

    def to_array(self) -> np.ndarray:
        """The npz contract's ``geometry_{i}``."""
        if self.kind == "dense":
            return np.array([self.out_channels, self.in_per_group], dtype=np.int64)
        return np.array([self.out_channels, self.in_per_group, *self.kernel, *self.stride,
                         *self.padding, *self.dilation, self.groups], dtype=np.int64)

    @classmethod
    def from_array(cls, kind: str, values: np.ndarray, input_shape: tuple[int, ...]):
        v = [int(x) for x in values]
        if kind == "dense":
            return cls("dense", tuple(input_shape), v[0], v[1])
        return cls("conv", tuple(input_shape), v[0], v[1], (v[2], v[3]), (v[4], v[5]),
                   (v[6], v[7]), (v[8], v[9]), v[10])

    @classmethod
    def of_module(cls, name: str, module: Any, input_shape: tuple[int, ...]):
        from torch import nn  # here: a geometry read from a file needs no torch

        if isinstance(module, nn.Linear):
            return cls("dense", tuple(input_shape), module.out_features, module.in_features)
        if module.padding_mode != "zeros":  # padded border copies real inputs: not zero events
            raise NeuroKDError(f"cannot count {name}: padding_mode {module.padding_mode!r} "
                               "(only zero padding)")
        pad = module.padding
        if isinstance(pad, str):  # "valid" / "same": torch stores the numbers it pads with
            both = module._reversed_padding_repeated_twice
            if any(both[i] != both[i + 1] for i in range(0, len(both), 2)):
                raise NeuroKDError(f"cannot count {name}: asymmetric 'same' padding")
            pad = tuple(both[::2][::-1])
        two_d = isinstance(module, nn.Conv2d)

        def as_2d(value, fill: int) -> tuple[int, int]:
            value = tuple(value) if isinstance(value, tuple | list) else (value,)
            return tuple(int(v) for v in value) if two_d else (fill, int(value[0]))

        shape = tuple(input_shape) if two_d else (input_shape[0], 1, input_shape[1])
        return cls("conv", shape, module.out_channels, module.in_channels // module.groups,
                   as_2d(module.kernel_size, 1), as_2d(module.stride, 1), as_2d(pad, 0),
                   as_2d(module.dilation, 1), module.groups)


class HasGeometry:
    """Shape attributes of a layer record that keeps a ``geometry: LayerGeometry`` field."""

    geometry: LayerGeometry

    @property
    def kind(self) -> str:
        return self.geometry.kind

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.geometry.input_shape

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.geometry.output_shape

    @property
    def stride(self) -> tuple[int, int]:
        return self.geometry.stride

    @property
    def padding(self) -> tuple[int, int]:
        return self.geometry.padding

    @property
    def dilation(self) -> tuple[int, int]:
        return self.geometry.dilation

    @property
    def groups(self) -> int:
        return self.geometry.groups
