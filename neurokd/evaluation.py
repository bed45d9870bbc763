"""Device choice, prediction and evaluation with firing rates (the fit loop is in fitting.py)."""

from __future__ import annotations

import torch
from spikingjelly.activation_based import functional
from spikingjelly.activation_based.neuron.base_node import BaseNode
from torch import nn
from torch.utils.data import DataLoader

from .errors import ConfigError


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but PyTorch sees no CUDA device")
    if name in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def is_spiking(model: nn.Module) -> bool:
    return any(isinstance(m, BaseNode) for m in model.modules())


class FiringRateMeter:
    """Counts spikes of every spiking-neuron module during forward passes."""

    def __init__(self, model: nn.Module):
        self.spikes = 0.0
        self.elements = 0
        self.handles = [m.register_forward_hook(self._hook) for m in model.modules()
                        if isinstance(m, BaseNode)]

    def _hook(self, module, inputs, output) -> None:
        self.spikes += float(output.detach().sum())
        self.elements += output.numel()

    @property
    def rate(self) -> float | None:
        return self.spikes / self.elements if self.elements else None

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Class scores [B, K]: the time-averaged logits of a spiking model, plain logits of an ANN."""
    if is_spiking(model):
        functional.reset_net(model)
        return model(x).mean(0)
    return model(x)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device,
             world=None) -> tuple[float, float | None]:
    """Accuracy and mean firing rate (``None`` for an ANN) over a loader (under torchrun: over
    every rank's shard, summed)."""
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
    if world is not None and world.active:
        correct, total, spikes, elements = world.sum(correct, total, meter.spikes, meter.elements)
        return correct / max(total, 1), (spikes / elements if elements else None)
    return correct / max(total, 1), meter.rate


@torch.no_grad()
def logits_of(model: nn.Module, loader: DataLoader, device: torch.device) -> torch.Tensor:
    model.eval()
    return torch.cat([predict(model, batch[0].to(device)) for batch in loader])
