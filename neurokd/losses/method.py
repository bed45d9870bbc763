"""``Method``: a method by name as one module, its logit loss plus its feature losses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .registry import LOSS_SPECS, parse_method, spec_params
from .value import LossValue


class Method(nn.Module):
    """The loss of method ``name`` with its hyper-parameters taken from ``values`` (each part's
    ``LossSpec.params``; e.g. ``RunConfig.to_dict()``). The feature heads are this module's
    parameters, so the fit loop trains them beside the student and keeps them in last.pt.

    ``forward`` returns a :class:`LossValue`: the logit loss's terms, then one term per feature
    loss (named after it), then ``rate`` when ``rate_targets`` (``{layer: r*}``, see
    :class:`~neurokd.losses.rate.RateLoss`) are given, the total being their sum.
    """

    def __init__(self, name: str, values: Mapping[str, Any],
                 student_shape: torch.Size | None = None,
                 teacher_shape: torch.Size | None = None,
                 rate_targets: Mapping[str, float] | None = None):
        super().__init__()
        rate_spec = LOSS_SPECS["rate"]
        self.rate = None if rate_targets is None else rate_spec.fn(
            rate_targets, **spec_params(rate_spec, values))
        parts = parse_method(name)
        self.logit_spec = LOSS_SPECS[parts.logit]
        self.logit_params = spec_params(self.logit_spec, values)
        self.heads = nn.ModuleDict({
            part: LOSS_SPECS[part].fn(student_shape, teacher_shape,
                                      **spec_params(LOSS_SPECS[part], values))
            for part in parts.features})

    def forward(self, student_logits, teacher_logits, targets, student_features=None,
                teacher_features=None, rates=None) -> LossValue:
        value = self.logit_spec.fn(student_logits, teacher_logits, targets, **self.logit_params)
        for part, head in self.heads.items():
            value = value.plus(part, head(student_features, teacher_features))
        if self.rate is not None:
            value = value.plus("rate", self.rate(rates or {}))
        return value
