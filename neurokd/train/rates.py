"""Each spiking layer's input spike rate in the training forward pass, and its target.

:class:`InputRates` hooks the synaptic layers (conv/linear, named as ``energy report`` names
them: their module paths) and keeps the mean of each one's input over timesteps, samples and
positions, as a tensor still attached to the graph: the rate term's gradient goes back
through the spikes' surrogate. :func:`rate_plan` decides which layers get a target.

The break-even rates themselves are the energy registry's (``neurokd.energy``), which the
training core does not import: a :class:`Pricer` made where energy may be imported (the CLI,
``neurokd.cli.rate_pricing``) is handed in, as ``exports=`` is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from spikingjelly.activation_based import functional
from torch import nn

from ..config import BREAK_EVEN, rate_target_value
from ..errors import ConfigError

_SYNAPTIC = (nn.Conv1d, nn.Conv2d, nn.Linear)  # what energy/count.py counts as a layer


class Pricer(Protocol):
    """What the training core asks of the energy registry."""

    def break_even(self, student: nn.Module, config: dict[str, Any],
                   teacher: nn.Module | None, inputs: torch.Tensor) -> dict[str, float | None]:
        """``{layer: break-even input rate}`` of ``student`` counted on ``inputs`` (a batch as
        the loaders give it), None for a layer without one (analog input, no ANN layer)."""

    def report(self, checkpoint: Path) -> dict[str, Any]:
        """metrics.json's ``energy``: what ``energy report CHECKPOINT`` says of the finished
        run under the pricer's profile, model and ANN (per-layer rate, break-even, below)."""


class InputRates:
    """Forward hooks keeping ``{layer: mean input}`` of the latest forward pass (0-d tensors
    on the graph) for the layers ``names``.

    >>> rates = InputRates(student, ["features.3", "features.6"])
    >>> logits = student(x); rates.values["features.3"]    # tensor(0.12, grad_fn=...)
    """

    def __init__(self, model: nn.Module, names):
        modules = dict(model.named_modules())
        self.values: dict[str, torch.Tensor] = {}
        self.handles = [modules[name].register_forward_hook(self._keeper(name))
                        for name in names]

    def _keeper(self, name: str):
        def keep(module, args, output) -> None:
            self.values[name] = args[0].float().mean()
        return keep

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def spiking_layers(model: nn.Module, inputs: torch.Tensor) -> dict[str, str]:
    """``{layer: why it gets no term}`` for every synaptic layer whose input the training
    cannot lower, and ``""`` for those it can: spikes of the network (0/1 values computed
    from the weights). One forward pass in eval mode (no BatchNorm statistics move)."""
    names = [name for name, m in model.named_modules() if isinstance(m, _SYNAPTIC)]
    seen: dict[str, str] = {}

    def probe(name):
        def hook(module, args, output) -> None:
            x = args[0]
            if name in seen:
                return
            if not x.requires_grad:
                seen[name] = "input from the data"  # no weight moves it
            elif not bool(((x == 0) | (x == 1)).all()):
                seen[name] = "analog input"
            else:
                seen[name] = ""
        return hook

    modules = dict(model.named_modules())
    handles = [modules[name].register_forward_hook(probe(name)) for name in names]
    was_training = model.training
    try:
        model.eval()
        functional.reset_net(model)
        with torch.enable_grad():
            model(inputs)
    finally:
        functional.reset_net(model)
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return {name: seen.get(name, "did not run") for name in names}


@dataclass(frozen=True)
class RatePlan:
    """Which layers the rate term reads and at what target. ``targets``: ``{layer: r*}``;
    ``untargeted``: ``{layer: why none}`` (break-even "never": the layer costs more than its
    ANN layer even silent; "any": it costs less at any rate; analog or data input)."""

    target: str
    targets: dict[str, float] = field(default_factory=dict)
    untargeted: dict[str, str] = field(default_factory=dict)
    break_even: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "targets": dict(self.targets),
                "untargeted": dict(self.untargeted), "break_even": dict(self.break_even)}


def rate_plan(config: Mapping[str, Any], student: nn.Module, teacher: nn.Module | None,
              inputs: torch.Tensor, pricer: Pricer | None) -> RatePlan:
    """The targets of ``config["rate_target"]`` for ``student`` (see :class:`RatePlan`).

    >>> plan = rate_plan(config, student, None, x, pricer)   # rate_target = "break-even"
    >>> plan.targets, plan.untargeted      # {'features.3': 0.073, ...}, {'features.0': ...}
    """
    target = config["rate_target"]
    kinds = spiking_layers(student, inputs)
    fixed = rate_target_value(target)
    if target == BREAK_EVEN:
        if pricer is None:
            raise ConfigError("--rate-target break-even needs the energy registry's prices: "
                              "run it through `neurokd distill` or pass "
                              "pricer=neurokd.cli.rate_pricing.EnergyPricer(...)")
        rates = pricer.break_even(student, dict(config), teacher, inputs)
    else:
        rates = dict.fromkeys(kinds, fixed)
    targets, untargeted = {}, {}
    for name, why in kinds.items():
        rate = rates.get(name)
        if why:
            untargeted[name] = why
        elif rate is None:
            untargeted[name] = "no break-even (no ANN layer of its name)"
        elif rate <= 0:
            untargeted[name] = f"break-even never (costs more than its ANN layer even silent: " \
                               f"{rate:.3g})"
        elif rate >= 1:
            untargeted[name] = f"break-even any (costs less at any rate: {rate:.3g})"
        else:
            targets[name] = float(rate)
    return RatePlan(target, targets, untargeted,
                    {name: rates.get(name) for name in kinds} if fixed is None else {})
