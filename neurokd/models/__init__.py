"""Model registry: students and teachers by name, rebuilt from a run config alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ..errors import ConfigError
from .ann import torchvision_resnet
from .snn import SpikingCNN, SpikingResNet, lif_factory, relu_factory

# name -> builder(input_shape, num_classes, timesteps, width, neuron_factory, spiking)
_ARCHS: dict[str, Callable[..., nn.Module]] = {
    "cnn": lambda shape, k, t, w, act, spiking: SpikingCNN(shape, k, t, w, act, spiking),
    "resnet": lambda shape, k, t, w, act, spiking: SpikingResNet(
        shape, k, t, (1, 1, 1), (w, 2 * w, 4 * w), None, act, spiking),
    # Spiking ResNet-19 (Zheng et al., AAAI 2021): stages 3-3-2 at 128-256-512 channels.
    "resnet19": lambda shape, k, t, w, act, spiking: SpikingResNet(
        shape, k, t, (3, 3, 2), (128, 256, 512), 128, act, spiking),
    "resnet18": lambda shape, k, t, w, act, spiking: SpikingResNet(
        shape, k, t, (2, 2, 2, 2), (64, 128, 256, 512), 64, act, spiking),
}


def build_student(config: dict[str, Any], spiking: bool = True) -> nn.Module:
    """The student of a run config (``spiking=False`` gives its ANN twin)."""
    shape, classes = _shape(config)
    if config["student"] not in _ARCHS:
        raise ConfigError(f"unknown student architecture {config['student']!r}")
    act = (lif_factory(config["neuron_tau"], config["v_threshold"], config["reset"])
           if spiking else relu_factory)
    return _ARCHS[config["student"]](shape, classes, config["timesteps"], config["width"], act,
                                     spiking)


def build_teacher(config: dict[str, Any]) -> nn.Module:
    shape, classes = _shape(config)
    arch = config["teacher_arch"]
    if arch == "twin":
        return build_student(config, spiking=False)
    if arch == "cnn":
        return SpikingCNN(shape, classes, 1, config["teacher_width"], relu_factory, spiking=False)
    if arch in ("resnet18", "resnet34"):
        if len(shape) != 3:
            raise ConfigError(f"teacher {arch} needs image input (C,H,W), not {shape}")
        return torchvision_resnet(int(arch[6:]), shape, classes)
    raise ConfigError(f"unknown teacher architecture {arch!r}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _shape(config: dict[str, Any]) -> tuple[tuple[int, ...], int]:
    if not config.get("input_shape") or not config.get("num_classes"):
        raise ConfigError("config lacks input_shape / num_classes: was it written by neurokd?")
    return tuple(int(d) for d in config["input_shape"]), int(config["num_classes"])
