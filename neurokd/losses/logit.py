"""Logit losses: ``fn(student_logits [T,B,K], teacher_logits [B,K] | None, targets [B], **params)``.

Each ``*_terms`` function returns a :class:`LossValue` (terms and total); each ``*_loss``
function is the same loss as a scalar tensor, for direct use. Formulas: docs/losses.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .value import LossValue


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


def _cross_entropy_at(logits: torch.Tensor, targets: torch.Tensor, ce_tau: float) -> torch.Tensor:
    # No division at the default temperature: the step costs no extra op, and the value is
    # today's TSER bit for bit.
    return F.cross_entropy(logits if ce_tau == 1 else logits / ce_tau, targets)


def ce_terms(student_logits, teacher_logits, targets) -> LossValue:
    """Cross-entropy on the time-averaged logits (no teacher)."""
    _check(student_logits, targets)
    return LossValue.of(ce=F.cross_entropy(student_logits.mean(0), targets))


def kd_terms(student_logits, teacher_logits, targets, alpha: float = 0.5,
             tau: float = 1.0) -> LossValue:
    """Hinton KD on the time-averaged logits: (1-a)*CE + a*tau^2*KL."""
    _check(student_logits, targets)
    mean_logits = student_logits.mean(0)
    kl = kl_to_teacher(mean_logits, _teacher(teacher_logits, "kd"), tau)
    return LossValue.of(ce=(1 - alpha) * F.cross_entropy(mean_logits, targets),
                        kl=alpha * tau**2 * kl)


def temporal_kd_terms(student_logits, teacher_logits, targets, *, alpha: float = 0.5,
                      tau: float = 1.0, lam: float | None = None, ce_tau: float = 1.0,
                      entropy_tau: float | None = None, separate_ce: bool = True,
                      separate_kl: bool = True) -> LossValue:
    """KD whose CE and/or KL terms are taken per timestep ("temporal separation"), with an
    entropy term ``−lam·mean_t H(softmax(z_t/entropy_tau))`` when ``lam`` is given.

    The CE is taken on ``z/ce_tau`` and not multiplied by ``ce_tau²`` (the KL's τ² keeps its
    gradients at the CE's scale; the CE needs no such repair). ``entropy_tau=None`` means τ.
    ``separate_ce=separate_kl=False`` without ``lam`` is ``kd``; both True with ``lam`` is
    ``tser``; the others are the paper's ablation rows.
    """
    _check(student_logits, targets)
    steps = student_logits.shape[0]
    teacher = _teacher(teacher_logits, "temporal KD")
    mean_logits = student_logits.mean(0)
    if separate_ce:
        ce = _cross_entropy_at(student_logits.flatten(0, 1), targets.repeat(steps), ce_tau)
    else:
        ce = _cross_entropy_at(mean_logits, targets, ce_tau)
    if separate_kl:
        kl = kl_to_teacher(student_logits, teacher.unsqueeze(0).expand_as(student_logits), tau)
    else:
        kl = kl_to_teacher(mean_logits, teacher, tau)
    terms = {"ce": (1 - alpha) * ce, "kl": alpha * tau**2 * kl}
    if lam is not None:
        entropy_tau = tau if entropy_tau is None else entropy_tau
        # λ=0 makes the term zero; H is not computed then, so the step costs what ts-both does.
        terms["entropy"] = (-(lam * _entropy(student_logits, entropy_tau)) if lam
                            else student_logits.new_zeros(()))
    return LossValue.of(**terms)


def _entropy(student_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """Mean over timesteps and samples of H(softmax(z_t / tau))."""
    log_q = F.log_softmax(student_logits / tau, dim=-1)
    return -(log_q.exp() * log_q).sum(-1).mean()


def tser_terms(student_logits, teacher_logits, targets, alpha: float = 0.5, tau: float = 1.0,
               lam: float = 0.05, ce_tau: float = 1.0,
               entropy_tau: float | None = None) -> LossValue:
    """Temporal separation + entropy regularisation (Yu et al., CVPR 2025).

    (1-a)*mean_t CE(z_t/ce_tau, y) + a*tau^2*mean_t KL(p_teacher || q_t) - lam*mean_t H(r_t),
    q_t = softmax(z_t / tau), r_t = softmax(z_t / entropy_tau). The entropy is subtracted, so
    minimising the loss raises it: a single over-confident timestep cannot copy the teacher's
    mistakes at full strength.
    """
    return temporal_kd_terms(student_logits, teacher_logits, targets, alpha=alpha, tau=tau,
                             lam=lam, ce_tau=ce_tau, entropy_tau=entropy_tau)


def ts_ce_terms(student_logits, teacher_logits, targets, alpha: float = 0.5, tau: float = 1.0,
                ce_tau: float = 1.0) -> LossValue:
    """Ablation: per-timestep CE, KL on the time-averaged logits, no entropy term."""
    return temporal_kd_terms(student_logits, teacher_logits, targets, alpha=alpha, tau=tau,
                             ce_tau=ce_tau, separate_ce=True, separate_kl=False)


def ts_kl_terms(student_logits, teacher_logits, targets, alpha: float = 0.5, tau: float = 1.0,
                ce_tau: float = 1.0) -> LossValue:
    """Ablation: CE on the time-averaged logits, per-timestep KL, no entropy term."""
    return temporal_kd_terms(student_logits, teacher_logits, targets, alpha=alpha, tau=tau,
                             ce_tau=ce_tau, separate_ce=False, separate_kl=True)


def ts_both_terms(student_logits, teacher_logits, targets, alpha: float = 0.5,
                  tau: float = 1.0, ce_tau: float = 1.0) -> LossValue:
    """Ablation: per-timestep CE and KL, no entropy term (tser with λ=0)."""
    return temporal_kd_terms(student_logits, teacher_logits, targets, alpha=alpha, tau=tau,
                             ce_tau=ce_tau, separate_ce=True, separate_kl=True)


def ce_loss(student_logits, teacher_logits, targets) -> torch.Tensor:
    """:func:`ce_terms` as a scalar."""
    return ce_terms(student_logits, teacher_logits, targets).total


def kd_loss(student_logits, teacher_logits, targets, alpha: float = 0.5,
            tau: float = 1.0) -> torch.Tensor:
    """:func:`kd_terms` as a scalar."""
    return kd_terms(student_logits, teacher_logits, targets, alpha, tau).total


def temporal_kd_loss(student_logits, teacher_logits, targets, **params) -> torch.Tensor:
    """:func:`temporal_kd_terms` as a scalar."""
    return temporal_kd_terms(student_logits, teacher_logits, targets, **params).total


def tser_loss(student_logits, teacher_logits, targets, alpha: float = 0.5, tau: float = 1.0,
              lam: float = 0.05, ce_tau: float = 1.0,
              entropy_tau: float | None = None) -> torch.Tensor:
    """:func:`tser_terms` as a scalar (the Python API's TSER)."""
    return tser_terms(student_logits, teacher_logits, targets, alpha, tau, lam, ce_tau,
                      entropy_tau).total
