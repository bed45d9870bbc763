"""Building blocks of a training run: device choice, one fit loop, evaluation with firing rates."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from spikingjelly.activation_based import functional
from spikingjelly.activation_based.neuron.base_node import BaseNode
from torch import nn
from torch.utils.data import DataLoader

from .errors import ConfigError, TrainingError
from .progress import Reporter


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda asked for, but PyTorch sees no CUDA device")
    return torch.device(name)


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
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[float, float | None]:
    """Accuracy and mean firing rate (``None`` for an ANN) over a loader."""
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
    return correct / max(total, 1), meter.rate


@torch.no_grad()
def logits_of(model: nn.Module, loader: DataLoader, device: torch.device) -> torch.Tensor:
    model.eval()
    return torch.cat([predict(model, batch[0].to(device)) for batch in loader])


@dataclass
class FitResult:
    best_epoch: int
    best_val_accuracy: float
    history: list[dict] = field(default_factory=list)


def fit(model: nn.Module, loader: DataLoader, val_loader: DataLoader, batch_loss: Callable,
        epochs: int, lr: float, weight_decay: float, device: torch.device, reporter: Reporter,
        label: str, on_epoch_end: Callable[[int, dict], None] | None = None) -> FitResult:
    """Adam + cosine schedule; keeps (and finally loads) the weights of the best validation epoch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    best_state, best = copy.deepcopy(model.state_dict()), FitResult(0, -1.0)
    for epoch in range(1, epochs + 1):
        model.train()
        task = reporter.start(f"{label} epoch {epoch}/{epochs}", len(loader))
        loss_sum, steps = 0.0, 0
        for step, batch in enumerate(loader, start=1):
            loss = batch_loss(batch)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise TrainingError(f"{label}: loss became {value} at epoch {epoch}, "
                                    f"step {step}; lower --lr or check the inputs")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum, steps = loss_sum + value, steps + 1
            reporter.advance(task)
        scheduler.step()
        val_accuracy, _ = evaluate(model, val_loader, device)
        record = {"epoch": epoch, "loss": loss_sum / max(steps, 1), "val_accuracy": val_accuracy}
        best.history.append(record)
        if val_accuracy > best.best_val_accuracy:
            best.best_epoch, best.best_val_accuracy = epoch, val_accuracy
            best_state = copy.deepcopy(model.state_dict())
        reporter.finish(task, f"loss {record['loss']:.4f}, val {100 * val_accuracy:.2f}%")
        if on_epoch_end:
            on_epoch_end(epoch, record)
    model.load_state_dict(best_state)
    return best
