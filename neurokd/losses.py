"""Distillation losses, one signature, a registry by name.

Every loss is ``loss(student_logits [T,B,K], teacher_logits [B,K] | None, targets [B]) -> scalar``.
``get_loss(name, alpha=..., tau=..., lam=...)`` binds the hyper-parameters a method uses.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .errors import ConfigError

LossFn = Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor], torch.Tensor]


def _check(student_logits: torch.Tensor, targets: torch.Tensor) -> None:
    if student_logits.dim() != 3:
        raise ValueError(f"student_logits must be [T, B, K], got {tuple(student_logits.shape)}")
    if targets.shape != student_logits.shape[1:2]:
        raise ValueError(f"targets must be [B]={student_logits.shape[1]}, got {tuple(targets.shape)}")


def _teacher(teacher_logits: torch.Tensor | None, method: str) -> torch.Tensor:
    if teacher_logits is None:
        raise ValueError(f"method {method!r} needs teacher logits")
    return teacher_logits.detach()


def kl_to_teacher(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """Mean over every leading axis of KL(softmax(t/tau) || softmax(z/tau)); z is [..., B, K]."""
    log_q = F.log_softmax(student_logits / tau, dim=-1)
    log_p = F.log_softmax(teacher_logits / tau, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1).mean()


def ce_loss(student_logits, teacher_logits, targets) -> torch.Tensor:
    """Cross-entropy on the time-averaged logits (no teacher)."""
    _check(student_logits, targets)
    return F.cross_entropy(student_logits.mean(0), targets)


def kd_loss(student_logits, teacher_logits, targets, alpha: float = 0.5,
            tau: float = 1.0) -> torch.Tensor:
    """Hinton KD on the time-averaged logits: (1-a)*CE + a*tau^2*KL."""
    _check(student_logits, targets)
    mean_logits = student_logits.mean(0)
    kl = kl_to_teacher(mean_logits, _teacher(teacher_logits, "kd"), tau)
    return (1 - alpha) * F.cross_entropy(mean_logits, targets) + alpha * tau**2 * kl


def temporal_kd_loss(student_logits, teacher_logits, targets, alpha: float = 0.5,
                     tau: float = 1.0, lam: float = 0.0, separate_ce: bool = True,
                     separate_kl: bool = True) -> torch.Tensor:
    """KD whose CE and/or KL terms are taken per timestep ("temporal separation"), minus
    ``lam`` times the mean per-timestep entropy of the student's softened distribution.

    ``separate_ce=separate_kl=False, lam=0`` is ``kd``; both True is ``tser``. The mixed forms are
    the paper's ablation rows.
    """
    _check(student_logits, targets)
    steps = student_logits.shape[0]
    teacher = _teacher(teacher_logits, "temporal KD")
    mean_logits = student_logits.mean(0)
    if separate_ce:
        ce = F.cross_entropy(student_logits.flatten(0, 1), targets.repeat(steps))
    else:
        ce = F.cross_entropy(mean_logits, targets)
    if separate_kl:
        kl = kl_to_teacher(student_logits, teacher.unsqueeze(0).expand_as(student_logits), tau)
    else:
        kl = kl_to_teacher(mean_logits, teacher, tau)
    loss = (1 - alpha) * ce + alpha * tau**2 * kl
    if lam:
        log_q = F.log_softmax(student_logits / tau, dim=-1)
        loss = loss - lam * (-(log_q.exp() * log_q).sum(-1).mean())
    return loss


def tser_loss(student_logits, teacher_logits, targets, alpha: float = 0.5, tau: float = 1.0,
              lam: float = 0.05) -> torch.Tensor:
    """Temporal separation + entropy regularisation (Yu et al., CVPR 2025).

    (1-a)*mean_t CE(z_t, y) + a*tau^2*mean_t KL(p_teacher || q_t) - lam*mean_t H(q_t),
    q_t = softmax(z_t / tau). The entropy is subtracted, so minimising the loss raises it: a
    single over-confident timestep cannot copy the teacher's mistakes at full strength.
    """
    return temporal_kd_loss(student_logits, teacher_logits, targets, alpha, tau, lam, True, True)


def _ablation(separate_ce: bool, separate_kl: bool, doc: str) -> LossFn:
    def loss(student_logits, teacher_logits, targets, alpha: float = 0.5, tau: float = 1.0):
        return temporal_kd_loss(student_logits, teacher_logits, targets, alpha, tau, 0.0,
                                separate_ce, separate_kl)
    loss.__doc__ = doc
    return loss


LOSSES: dict[str, LossFn] = {
    "ce": ce_loss,
    "kd": kd_loss,
    "tser": tser_loss,
    # Ablations of TSER (no entropy term): which parts are taken per timestep.
    "ts-ce": _ablation(True, False, "per-timestep CE, KL on time-averaged logits"),
    "ts-kl": _ablation(False, True, "CE on time-averaged logits, per-timestep KL"),
    "ts-both": _ablation(True, True, "per-timestep CE and KL, no entropy term"),
}
NEEDS_TEACHER = {"kd", "tser", "ts-ce", "ts-kl", "ts-both"}


def get_loss(name: str, **hparams: float) -> LossFn:
    """The loss ``name`` with the hyper-parameters it accepts bound (others are ignored)."""
    if name not in LOSSES:
        raise ConfigError(f"unknown method {name!r}; choose from {', '.join(LOSSES)}")
    fn = LOSSES[name]
    accepted = inspect.signature(fn).parameters
    return functools.partial(fn, **{k: v for k, v in hparams.items() if k in accepted})
