"""Spiking students built from spikingjelly (multi-step mode, LIF, surrogate gradients).

Every model takes ``[B, C, H, W]`` (repeated T times: direct encoding) or ``[T, B, C, H, W]`` and
returns logits ``[T, B, K]``. With ``spiking=False`` the same topology uses ReLU and returns
``[B, K]``: that is the student's ANN twin and the ``cnn`` teacher. An ANN given frames or
spikes ``[T, B, C, H, W]`` sees their average over time, ``[B, C, H, W]``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from spikingjelly.activation_based import layer, neuron, surrogate
from torch import nn

from ..data.encoding import time_average, time_major


def lif_factory(tau: float = 2.0, v_threshold: float = 1.0, reset: str = "hard") -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        return neuron.LIFNode(
            tau=float(tau), v_threshold=float(v_threshold),
            v_reset=0.0 if reset == "hard" else None,  # None: subtract the threshold (soft reset)
            surrogate_function=surrogate.ATan(), detach_reset=True, step_mode="m")
    return make


def relu_factory() -> nn.Module:
    return nn.ReLU()


class TimeModel(nn.Module):
    """Direct encoding and the T axis, shared by all built-in models."""

    def __init__(self, timesteps: int, spiking: bool, input_shape):
        super().__init__()
        self.timesteps = timesteps if spiking else 1
        self.spiking = spiking
        self.input_shape = tuple(input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.spiking:
            x = time_average(x, self.input_shape)
        out = self.body(time_major(x, self.input_shape, self.timesteps))  # each subclass defines body([T, B, ...]) -> [T, B, K]
        return out if self.spiking else out[0]


def _kernel(height: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """3x3 kernels, or 1x3 for one-row (1-D) inputs such as mnist1d."""
    return ((3, 3), (1, 1)) if height > 1 else ((1, 3), (0, 1))


def _out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class SpikingCNN(TimeModel):
    """conv(s1)-BN-act, conv(s2)-BN-act, conv(s2)-BN-act, flatten, linear read-out per step.

    Strided convolutions instead of pooling keep every layer representable on Loihi (netx has
    no pooling layer).
    """

    def __init__(self, input_shape, num_classes: int, timesteps: int = 4, width: int = 16,
                 neuron_factory: Callable[[], nn.Module] | None = None, spiking: bool = True):
        super().__init__(timesteps, spiking, input_shape)
        channels, height, width_px = input_shape
        act = neuron_factory or (lif_factory() if spiking else relu_factory)
        kernel, padding = _kernel(height)
        widths = (width, 2 * width, 2 * width)
        strides = (1, 2, 2)
        blocks, c_in = [], channels
        for c_out, stride in zip(widths, strides, strict=True):
            step = (stride if height > 1 else 1, stride)
            blocks += [layer.Conv2d(c_in, c_out, kernel, step, padding, bias=False, step_mode="m"),
                       layer.BatchNorm2d(c_out, step_mode="m"), act()]
            height = _out_size(height, kernel[0], step[0], padding[0])
            width_px = _out_size(width_px, kernel[1], step[1], padding[1])
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(layer.Flatten(step_mode="m"),
                                        layer.Linear(c_in * height * width_px, num_classes,
                                                     step_mode="m"))

    def body(self, x_seq: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x_seq))


class SpikingBasicBlock(nn.Module):
    """conv-BN-act-conv-BN plus the shortcut, then act (membrane-shortcut spiking ResNet)."""

    def __init__(self, c_in: int, c_out: int, stride: int, act: Callable[[], nn.Module]):
        super().__init__()
        self.conv1 = layer.Conv2d(c_in, c_out, 3, stride, 1, bias=False, step_mode="m")
        self.bn1 = layer.BatchNorm2d(c_out, step_mode="m")
        self.act1 = act()
        self.conv2 = layer.Conv2d(c_out, c_out, 3, 1, 1, bias=False, step_mode="m")
        self.bn2 = layer.BatchNorm2d(c_out, step_mode="m")
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                layer.Conv2d(c_in, c_out, 1, stride, 0, bias=False, step_mode="m"),
                layer.BatchNorm2d(c_out, step_mode="m"))
        self.act2 = act()

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x_seq)))))
        return self.act2(out + self.shortcut(x_seq))


class SpikingResNet(TimeModel):
    """ResNet for small images: 3x3 stem, stages of basic blocks, global average pool, linear."""

    def __init__(self, input_shape, num_classes: int, timesteps: int = 4,
                 stages: tuple[int, ...] = (1, 1, 1), widths: tuple[int, ...] = (16, 32, 64),
                 stem_width: int | None = None,
                 neuron_factory: Callable[[], nn.Module] | None = None, spiking: bool = True):
        super().__init__(timesteps, spiking, input_shape)
        act = neuron_factory or (lif_factory() if spiking else relu_factory)
        stem_width = stem_width or widths[0]
        self.stem = nn.Sequential(
            layer.Conv2d(input_shape[0], stem_width, 3, 1, 1, bias=False, step_mode="m"),
            layer.BatchNorm2d(stem_width, step_mode="m"), act())
        blocks, c_in = [], stem_width
        for index, (count, c_out) in enumerate(zip(stages, widths, strict=True)):
            for block in range(count):
                stride = 2 if index > 0 and block == 0 else 1
                blocks.append(SpikingBasicBlock(c_in, c_out, stride, act))
                c_in = c_out
        self.layers = nn.Sequential(*blocks)
        self.pool = layer.AdaptiveAvgPool2d((1, 1), step_mode="m")
        self.classifier = nn.Sequential(layer.Flatten(step_mode="m"),
                                        layer.Linear(c_in, num_classes, step_mode="m"))

    def body(self, x_seq: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.layers(self.stem(x_seq))))
