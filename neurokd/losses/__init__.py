"""Distillation losses: one :class:`LossSpec` per method part in ``LOSS_SPECS``.

A logit loss is ``fn(student_logits [T,B,K], teacher_logits [B,K] | None, targets [B],
**params) -> LossValue`` (named terms and their total); ``tser_loss`` and friends return the
scalar. A method name joins at most one logit loss and any feature losses with ``+``
(:func:`method_names` lists them all); :class:`Method` builds one. Formulas: docs/losses.md.
"""

from .feature import BlurredLoss, HintLoss
from .logit import (
    ce_loss,
    ce_terms,
    kd_loss,
    kd_terms,
    kl_to_teacher,
    temporal_kd_loss,
    temporal_kd_terms,
    ts_both_terms,
    ts_ce_terms,
    ts_kl_terms,
    tser_loss,
    tser_terms,
)
from .method import Method
from .rate import RateLoss, rate_penalty
from .registry import (
    IMPLIED_LOGIT,
    LOSS_SPECS,
    LossSpec,
    MethodParts,
    get_loss,
    method_group,
    method_names,
    method_params,
    method_rule,
    needs_teacher,
    param_readers,
    parse_method,
    spec_params,
    uses_features,
)
from .value import LossValue

__all__ = [
    "LOSS_SPECS", "LossSpec", "LossValue", "Method", "MethodParts", "IMPLIED_LOGIT",
    "method_names", "method_rule", "parse_method", "method_params", "method_group",
    "needs_teacher", "uses_features", "spec_params", "param_readers", "get_loss",
    "ce_terms", "kd_terms", "tser_terms", "temporal_kd_terms", "ts_ce_terms", "ts_kl_terms",
    "ts_both_terms", "ce_loss", "kd_loss", "tser_loss", "temporal_kd_loss", "kl_to_teacher",
    "HintLoss", "BlurredLoss", "RateLoss", "rate_penalty",
]
