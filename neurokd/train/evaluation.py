"""Prediction and evaluation with firing rates (the fit loop is in fitting.py, the device choice
in ``neurokd.runtime.device``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from spikingjelly.activation_based import functional
from spikingjelly.activation_based.neuron.base_node import BaseNode
from torch import nn
from torch.utils.data import DataLoader


def is_spiking(model: nn.Module) -> bool:
    return any(isinstance(m, BaseNode) for m in model.modules())


class FiringRateMeter:
    """Counts spikes of every spiking-neuron module during forward passes, per module."""

    def __init__(self, model: nn.Module):
        self.spikes: dict[str, float] = {}
        self.elements: dict[str, int] = {}
        self.handles = [m.register_forward_hook(self._hook_for(name or type(m).__name__))
                        for name, m in model.named_modules() if isinstance(m, BaseNode)]

    def _hook_for(self, name: str):
        def hook(module, inputs, output) -> None:
            self.spikes[name] = self.spikes.get(name, 0.0) + float(output.detach().sum())
            self.elements[name] = self.elements.get(name, 0) + output.numel()
        return hook

    @property
    def rate(self) -> float | None:
        """Spikes per neuron and timestep over every neuron layer together."""
        elements = sum(self.elements.values())
        return sum(self.spikes.values()) / elements if elements else None

    def layer_rates(self) -> dict[str, float]:
        return {name: self.spikes[name] / count for name, count in self.elements.items()
                if count}

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


@dataclass
class Evaluation:
    accuracy: float
    firing_rate: float | None                  # None for an ANN
    layer_firing_rates: dict[str, float] = field(default_factory=dict)


def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Class scores [B, K]: the time-averaged logits of a spiking model, plain logits of an ANN."""
    if is_spiking(model):
        functional.reset_net(model)
        return model(x).mean(0)
    return model(x)


@torch.no_grad()
def evaluate_layers(model: nn.Module, loader: DataLoader, device: torch.device,
                    world=None) -> Evaluation:
    """Accuracy, mean firing rate and the firing rate of each neuron layer over a loader
    (under torchrun: over every rank's shard, summed)."""
    model.eval()
    meter = FiringRateMeter(model)
    correct = total = 0
    try:
        for batch in loader:
            x, y = batch[0].to(device), batch[1].to(device)
            correct += int((predict(model, x).argmax(-1) == y).sum())
            total += len(y)
    finally:
        meter.close()
    names = sorted(meter.elements)
    if world is not None and world.active:
        summed = world.sum(correct, total, *(meter.spikes[n] for n in names),
                           *(meter.elements[n] for n in names))
        correct, total = summed[:2]
        meter.spikes = dict(zip(names, summed[2:2 + len(names)], strict=True))
        meter.elements = dict(zip(names, summed[2 + len(names):], strict=True))
    return Evaluation(correct / max(total, 1), meter.rate, meter.layer_rates())


def evaluate(model: nn.Module, loader: DataLoader, device: torch.device,
             world=None) -> tuple[float, float | None]:
    """Accuracy and mean firing rate (``None`` for an ANN) over a loader."""
    result = evaluate_layers(model, loader, device, world)
    return result.accuracy, result.firing_rate


@torch.no_grad()
def logits_of(model: nn.Module, loader: DataLoader, device: torch.device) -> torch.Tensor:
    model.eval()
    return torch.cat([predict(model, batch[0].to(device)) for batch in loader])
