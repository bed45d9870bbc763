"""The spike-rate term: each spiking layer's input rate pushed below a target.

``RateLoss(targets, rate_weight, rate_margin)`` is an ``nn.Module`` whose
``forward(rates)`` takes ``{layer name: r_l}`` (0-d tensors: the mean of the layer's input
spikes over timesteps, samples and positions in the training forward pass, so the gradient
reaches the spikes through the surrogate) and returns

    w · Σ_l ReLU(r_l − m · r*_l)²

over the layers that have a target ``r*_l``. The targets come from outside (the break-even
rates the energy registry computes, or one fixed number): this module only prices a rate
above its target, so a layer already below ``m · r*_l`` costs nothing and gets no gradient
(unlike snnTorch's ``l1_rate_sparsity``, which pushes every spike down whether the layer is
too busy or not).

    >>> loss = RateLoss({"features.3": 0.1}, rate_weight=2.0, rate_margin=0.5)
    >>> round(float(loss({"features.3": torch.tensor(0.25)})), 6)   # 2 · (0.25 − 0.05)²
    0.08
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


def rate_penalty(rates: Mapping[str, torch.Tensor], targets: Mapping[str, float],
                 rate_weight: float, rate_margin: float) -> torch.Tensor:
    """``w · Σ_l ReLU(r_l − m · r*_l)²`` over the layers of ``targets`` (each must be in
    ``rates``: a layer that did not run would silently drop out of the sum otherwise)."""
    missing = sorted(set(targets) - set(rates))
    if missing:
        raise ValueError(f"no input rate recorded for {', '.join(missing)}")
    if not targets:
        return torch.zeros(())
    terms = [torch.relu(rates[name].float() - rate_margin * target) ** 2
             for name, target in targets.items()]
    return rate_weight * torch.stack(terms).sum()


class RateLoss(nn.Module):
    """The rate term over a fixed set of layers (see the module doc). No parameters; the
    targets are a buffer, so last.pt keeps the ones in force and a resumed run goes on with
    them. :meth:`set_targets` replaces them (break-even rates move as the student's own
    activity changes what its layers cost: they are repriced each epoch)."""

    def __init__(self, targets: Mapping[str, float], rate_weight: float = 1.0,
                 rate_margin: float = 0.9):
        super().__init__()
        self.names = list(targets)
        self.register_buffer("target_values",
                             torch.tensor([float(targets[n]) for n in self.names],
                                          dtype=torch.float64))
        self.rate_weight, self.rate_margin = float(rate_weight), float(rate_margin)
        # read on the host once per change, not per step (a device sync on CUDA)
        self.targets: dict[str, float] = dict(zip(self.names, map(float, targets.values()),
                                                  strict=True))
        self.register_load_state_dict_post_hook(lambda module, _: module._refresh())

    def _refresh(self) -> None:
        self.targets = dict(zip(self.names, self.target_values.tolist(), strict=True))

    def set_targets(self, targets: Mapping[str, float]) -> None:
        """New ``r*`` for the same layers (a layer cannot join or leave: its term's history
        would start or stop mid-run)."""
        if set(targets) != set(self.names):
            raise ValueError(f"targets for {sorted(targets)}, the term has {sorted(self.names)}")
        self.target_values.copy_(torch.tensor([float(targets[n]) for n in self.names],
                                              dtype=torch.float64))
        self._refresh()

    def aims(self) -> dict[str, float]:
        """``{layer: m · r*}``: the rate each layer is pushed below."""
        return {name: self.rate_margin * target for name, target in self.targets.items()}

    def forward(self, rates: Mapping[str, torch.Tensor]) -> torch.Tensor:
        value = rate_penalty(rates, self.targets, self.rate_weight, self.rate_margin)
        if rates and not self.targets:  # on the rates' device, for the sum with the others
            value = value.to(next(iter(rates.values())).device)
        return value
