"""Prediction and evaluation with firing rates (the fit loop is in fitting.py, the device choice
in ``neurokd.runtime.device``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from spikingjelly.activation_based import functional
from spikingjelly.activation_based.neuron.base_node import BaseNode
from torch import nn
from torch.utils.data import DataLoader

from ..anytime import correct_by_timestep
from ..student.layers import SYNAPTIC, NeuronOwners


def is_spiking(model: nn.Module) -> bool:
    return any(isinstance(m, BaseNode) for m in model.modules())


class FiringRateMeter:
    """Counts spikes of every spiking-neuron module during forward passes, per layer: a
    layer's spikes are those of the neurons after its conv/linear, under that module's path
    (``neurokd.student.layers``; ``features.0``, as in ``energy report``)."""

    def __init__(self, model: nn.Module):
        self.spikes: dict[str, float] = {}
        self.elements: dict[str, int] = {}
        self.owners = NeuronOwners()
        neurons = [(name or type(m).__name__, m) for name, m in model.named_modules()
                   if isinstance(m, BaseNode)]
        synapses = [(name, m) for name, m in model.named_modules()
                    if neurons and isinstance(m, SYNAPTIC)]
        self.handles = [m.register_forward_hook(self._hook_for(name)) for name, m in neurons]
        self.handles += [m.register_forward_hook(
            lambda _m, _i, _o, name=name: self.owners.synapse(name)) for name, m in synapses]

    def _hook_for(self, name: str):
        def hook(module, inputs, output) -> None:
            layer = self.owners.neuron(name)
            self.spikes[layer] = self.spikes.get(layer, 0.0) + float(output.detach().sum())
            self.elements[layer] = self.elements.get(layer, 0) + output.numel()
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
    # a spiking model's accuracy from the first t timesteps and of step t alone, t = 1..T
    # (neurokd.anytime); accuracy_by_timestep[-1] is ``accuracy``, from the same counts.
    # None for an ANN.
    accuracy_by_timestep: list[float] | None = None
    accuracy_at_timestep: list[float] | None = None
    # the per-timestep logits [T, N, K] and labels [N] (on the CPU), when asked to keep them
    logits: torch.Tensor | None = None
    labels: torch.Tensor | None = None


def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Class scores [B, K]: the time-averaged logits of a spiking model, plain logits of an ANN."""
    if is_spiking(model):
        functional.reset_net(model)
        return model(x).mean(0)
    return model(x)


def timestep_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits per timestep ``[T, B, K]`` of a spiking model (an ANN's ``[B, K]`` as one step,
    ``[1, B, K]``): what :func:`predict` averages, kept apart so that the prediction after
    every prefix of steps can be counted (``neurokd.anytime``)."""
    if is_spiking(model):
        functional.reset_net(model)
        return model(x)
    return model(x).unsqueeze(0)


# BatchNorm's running averages follow the last ~1/momentum steps (10 at torch's 0.1): an epoch
# of fewer steps leaves them describing weights several epochs old.
BN_WINDOW = 10


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, loader: DataLoader, device: torch.device) -> int:
    """Recompute every BatchNorm's running mean and variance from ``loader`` (the training
    split in order, no augmentation) with the current weights: a cumulative average over all
    its batches (momentum None), in training mode, without gradients. Returns how many
    BatchNorm layers were recomputed (0: none to do). The model's mode is restored.

    With few steps per epoch the running statistics lag the weights, and a student right in
    training is silent in evaluation (measured: 2 steps per epoch on digits-dvs, validation at
    chance for 12 epochs; recomputed, it tracks its training accuracy).

        >>> recalibrate_batchnorm(student, make_loader(train_split, 256), torch.device("cpu"))
        3
    """
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
              and m.track_running_stats]
    if not layers:
        return 0
    was_training = model.training
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # a cumulative average over every batch below
    model.train()
    try:
        for batch in loader:
            x = batch[0].to(device)
            if is_spiking(model):
                functional.reset_net(model)
            model(x)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
        model.train(was_training)
        if is_spiking(model):
            functional.reset_net(model)
    return len(layers)


@torch.no_grad()
def evaluate_layers(model: nn.Module, loader: DataLoader, device: torch.device,
                    world=None, keep_logits: bool = False) -> Evaluation:
    """Accuracy (overall and after each timestep), mean firing rate and the firing rate of
    each neuron layer over a loader (under torchrun: over every rank's shard, summed).
    ``keep_logits`` also returns this process's per-timestep logits and labels."""
    model.eval()
    spiking = is_spiking(model)
    meter = FiringRateMeter(model)
    cumulative = single = None  # correct counts per timestep, [T]
    total = 0
    kept: list[tuple[torch.Tensor, torch.Tensor]] = []
    try:
        for batch in loader:
            x, y = batch[0].to(device), batch[1].to(device)
            logits = timestep_logits(model, x)
            counts = correct_by_timestep(logits, y)
            cumulative, single = counts if cumulative is None else \
                (cumulative + counts[0], single + counts[1])
            total += len(y)
            if keep_logits:
                kept.append((logits.detach().cpu(), y.cpu()))
    finally:
        meter.close()
    cumulative = [] if cumulative is None else cumulative.tolist()
    single = [] if single is None else single.tolist()
    names = sorted(meter.elements)
    if world is not None and world.active:
        steps = len(cumulative)
        summed = world.sum(total, *cumulative, *single, *(meter.spikes[n] for n in names),
                           *(meter.elements[n] for n in names))
        total, cumulative, single = summed[0], summed[1:1 + steps], summed[1 + steps:1 + 2 * steps]
        rest = summed[1 + 2 * steps:]
        meter.spikes = dict(zip(names, rest[:len(names)], strict=True))
        meter.elements = dict(zip(names, rest[len(names):], strict=True))
    by_timestep = [c / max(total, 1) for c in cumulative]
    at_timestep = [c / max(total, 1) for c in single]
    result = Evaluation(by_timestep[-1] if by_timestep else 0.0, meter.rate, meter.layer_rates())
    if spiking:  # the full-T accuracy is the last prefix's: one count, one division
        result.accuracy_by_timestep, result.accuracy_at_timestep = by_timestep, at_timestep
    if keep_logits and kept:
        result.logits = torch.cat([k[0] for k in kept], dim=1)
        result.labels = torch.cat([k[1] for k in kept])
    return result


def evaluate(model: nn.Module, loader: DataLoader, device: torch.device,
             world=None) -> tuple[float, float | None]:
    """Accuracy and mean firing rate (``None`` for an ANN) over a loader."""
    result = evaluate_layers(model, loader, device, world)
    return result.accuracy, result.firing_rate


@torch.no_grad()
def logits_of(model: nn.Module, loader: DataLoader, device: torch.device) -> torch.Tensor:
    model.eval()
    return torch.cat([predict(model, batch[0].to(device)) for batch in loader])
