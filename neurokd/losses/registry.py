"""The methods: one :class:`LossSpec` per name in ``LOSS_SPECS``, and everything derived from it.

A method name is at most one logit loss plus any feature losses, joined by ``+``, logit loss
first and feature losses in registry order (``tser+fitnet``). ``ce`` is implied when only
feature losses are named and is never written out (``fitnet``, not ``ce+fitnet``), so each
method has one spelling, which is also its run-folder and benchmark key.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from . import feature, logit, rate

# "rate" is no method part: --rate-target adds it to any method (docs/energy-aware.md)
KINDS = ("logit", "feature", "rate")
IMPLIED_LOGIT = "ce"  # trains the classifier when a method names only feature losses


@dataclass(frozen=True)
class LossSpec:
    """One method part. ``fn``: for a logit loss, ``fn(student_logits, teacher_logits, targets,
    **params) -> LossValue``; for a feature loss, the head class, built as ``fn(student_shape,
    teacher_shape, **params)`` and called as ``head(student_features, teacher_features)``.
    ``params`` are the RunConfig fields handed to ``fn`` as keywords, ``terms`` the names of
    the terms it returns (the keys of the history's ``terms``), ``group`` its row group in
    benchmarks/compare_methods.py, ``summary`` and ``formula`` the docs table's text."""

    name: str
    fn: Callable
    kind: str
    needs_teacher: bool
    params: tuple[str, ...]
    terms: tuple[str, ...]
    group: str
    summary: str
    formula: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind must be one of {KINDS}, not {self.kind!r}")
        if "+" in self.name or not self.name:
            raise ValueError(f"{self.name!r}: '+' joins method parts; it cannot be in a name")
        if self.kind == "feature" and not self.needs_teacher:
            raise ValueError(f"{self.name}: a feature loss matches the teacher's features")


_TEMPORAL = ("alpha", "tau", "ce_tau")  # what tser and its ablations share
_SPECS = (
    LossSpec(name="ce", fn=logit.ce_terms, kind="logit", needs_teacher=False, params=(),
             terms=("ce",), group="methods",
             summary="cross-entropy on the time-averaged logits; no teacher",
             formula="CE(z̄, y)"),
    LossSpec(name="kd", fn=logit.kd_terms, kind="logit", needs_teacher=True,
             params=("alpha", "tau"), terms=("ce", "kl"), group="methods",
             summary="Hinton KD on the time-averaged logits",
             formula="(1−α)·CE(z̄, y) + α·τ²·KL(p ‖ softmax(z̄/τ))"),
    LossSpec(name="tser", fn=logit.tser_terms, kind="logit", needs_teacher=True,
             params=(*_TEMPORAL, "lam", "entropy_tau"), terms=("ce", "kl", "entropy"),
             group="methods",
             summary="temporal separation + entropy regularisation (Yu et al., CVPR 2025)",
             formula="(1−α)·mean_t CE(z_t/τ_ce, y) + α·τ²·mean_t KL(p ‖ softmax(z_t/τ)) "
                     "− λ·mean_t H(softmax(z_t/τ_H))"),
    LossSpec(name="ts-ce", fn=logit.ts_ce_terms, kind="logit", needs_teacher=True,
             params=_TEMPORAL, terms=("ce", "kl"), group="ablation",
             summary="ablation of tser: per-timestep CE, KL on the time-averaged logits",
             formula="(1−α)·mean_t CE(z_t/τ_ce, y) + α·τ²·KL(p ‖ softmax(z̄/τ))"),
    LossSpec(name="ts-kl", fn=logit.ts_kl_terms, kind="logit", needs_teacher=True,
             params=_TEMPORAL, terms=("ce", "kl"), group="ablation",
             summary="ablation of tser: CE on the time-averaged logits, per-timestep KL",
             formula="(1−α)·CE(z̄/τ_ce, y) + α·τ²·mean_t KL(p ‖ softmax(z_t/τ))"),
    LossSpec(name="ts-both", fn=logit.ts_both_terms, kind="logit", needs_teacher=True,
             params=_TEMPORAL, terms=("ce", "kl"), group="ablation",
             summary="ablation of tser: per-timestep CE and KL, no entropy term",
             formula="(1−α)·mean_t CE(z_t/τ_ce, y) + α·τ²·mean_t KL(p ‖ softmax(z_t/τ))"),
    LossSpec(name="fitnet", fn=feature.HintLoss, kind="feature", needs_teacher=True,
             params=("feature_weight",), terms=("fitnet",), group="features",
             summary="FitNets hints: a 1x1 projection of the student's firing-rate map "
                     "regresses the teacher's features (Romero et al., ICLR 2015)",
             formula="w·MSE(P(f̄_s), f_t)"),
    LossSpec(name="bkd", fn=feature.BlurredLoss, kind="feature", needs_teacher=True,
             params=("feature_weight", "mask_ratio"), terms=("bkd",), group="features",
             summary="blurred KD: a generator restores the teacher's features from the "
                     "projected map with a share r of positions blurred (BKDSNN, ECCV 2024)",
             formula="w·MSE(G(blur_r(P(f̄_s))), f_t)"),
    LossSpec(name="rate", fn=rate.RateLoss, kind="rate", needs_teacher=False,
             params=("rate_weight", "rate_margin"), terms=("rate",), group="energy",
             summary="added to any method by --rate-target: each spiking layer's input spike "
                     "rate r_l above m times its target r*_l (break-even under --profile/"
                     "--energy-model/--ann, or one number) is penalised",
             formula="w·Σ_l ReLU(r_l − m·r*_l)²"),
)
LOSS_SPECS: dict[str, LossSpec] = {spec.name: spec for spec in _SPECS}


@dataclass(frozen=True)
class MethodParts:
    logit: str
    features: tuple[str, ...]

    @property
    def name(self) -> str:
        """The one spelling of this method."""
        if self.features and self.logit == IMPLIED_LOGIT:
            return "+".join(self.features)
        return "+".join((self.logit, *self.features))

    @property
    def specs(self) -> tuple[LossSpec, ...]:
        return tuple(LOSS_SPECS[part] for part in (self.logit, *self.features))


def _names(kind: str) -> list[str]:
    return [name for name, spec in LOSS_SPECS.items() if spec.kind == kind]


def method_rule() -> str:
    """The naming rule in words, for errors and ``--method`` help."""
    return (f"one of {', '.join(_names('logit'))}, and/or feature losses "
            f"{', '.join(_names('feature'))}, joined by '+' with the logit loss first "
            f"(e.g. tser+fitnet; {IMPLIED_LOGIT} is implied when none is named)")


def parse_method(name: Any) -> MethodParts:
    """The parts of method ``name``; ConfigError (with the right spelling where there is one)
    for anything :func:`method_names` does not list."""
    parts = name.split("+") if isinstance(name, str) else []
    specs = [LOSS_SPECS.get(part) for part in parts]
    logits = [s.name for s in specs if s is not None and s.kind == "logit"]
    if any(s is not None and s.kind not in ("logit", "feature") for s in specs):
        specs.append(None)  # the rate term comes with --rate-target, not in a method name
    if not parts or None in specs or len(logits) > 1 or len(set(parts)) != len(parts):
        raise ConfigError(f"method {name!r}: give {method_rule()}")
    features = tuple(f for f in _names("feature") if f in parts)
    canonical = MethodParts(logits[0] if logits else IMPLIED_LOGIT, features)
    if canonical.name != name:
        raise ConfigError(f"method {name!r} is spelled {canonical.name!r}")
    return canonical


@functools.cache
def method_names() -> tuple[str, ...]:
    """Every valid method name, in a stable order: the logit losses, the feature losses (alone
    and combined), then each other logit loss with each feature combination."""
    features = _names("feature")
    combos = [c for size in range(1, len(features) + 1)
              for c in itertools.combinations(features, size)]
    hybrids = [MethodParts(logit_name, combo).name for combo in combos
               for logit_name in _names("logit") if logit_name != IMPLIED_LOGIT]
    return (*_names("logit"), *("+".join(c) for c in combos), *hybrids)


def needs_teacher(name: str) -> bool:
    return any(spec.needs_teacher for spec in parse_method(name).specs)


def uses_features(name: str) -> bool:
    return bool(parse_method(name).features)


def method_params(name: str) -> tuple[str, ...]:
    """The RunConfig fields method ``name`` reads, its logit loss's first."""
    return tuple(dict.fromkeys(p for spec in parse_method(name).specs for p in spec.params))


def param_readers(param: str) -> tuple[str, ...]:
    """The losses that read RunConfig field ``param`` (for its ``--help``)."""
    return tuple(name for name, spec in LOSS_SPECS.items() if param in spec.params)


def method_group(name: str) -> str:
    """The benchmark group of a method: its feature losses' group if it has any, else its
    logit loss's."""
    parts = parse_method(name)
    return LOSS_SPECS[(parts.features or (parts.logit,))[0]].group


def spec_params(spec: LossSpec, values: Mapping[str, Any]) -> dict[str, Any]:
    """The keywords handed to ``spec.fn``: its params, taken from ``values`` (e.g. a RunConfig
    dict; other keys are not passed on)."""
    missing = [p for p in spec.params if p not in values]
    if missing:
        raise ConfigError(f"{spec.name} reads {', '.join(missing)}: not given")
    return {p: values[p] for p in spec.params}


def get_loss(name: str, **params: Any) -> Callable:
    """Logit loss ``name`` as a scalar function ``(student_logits, teacher_logits, targets)``,
    with ``params`` (some of those it reads; the rest keep the function's defaults) bound."""
    spec = LOSS_SPECS.get(name)
    if spec is None or spec.kind != "logit":
        raise ConfigError(f"unknown logit loss {name!r}; choose from {', '.join(_names('logit'))}")
    unread = sorted(set(params) - set(spec.params))
    if unread:
        raise ConfigError(f"{name} does not read {', '.join(unread)} (it reads "
                          f"{', '.join(spec.params) or 'nothing'})")

    def loss(student_logits, teacher_logits, targets):
        return spec.fn(student_logits, teacher_logits, targets, **params).total

    return loss
