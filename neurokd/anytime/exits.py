"""Early exit: where each sample stops under a rule, the threshold chosen on validation, the
oracle bound, and the ``exit`` record of metrics.json.

A rule scores the prefix softmax ``p_t = softmax(z̄_t)`` at every step; a sample exits at

    e_b(c) = min { t : rule fires on score_t,b at threshold c }, or T if it never fires,

and predicts ``argmax z̄_{e_b}``, the prediction :func:`~neurokd.anytime.accuracy_by_timestep`
counts at step ``e_b``: a threshold that never fires gives the full-T accuracy exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, NeuroKDError
from .curves import _check, prefix_logits, prefix_probabilities
from .registry import EXIT_RULES, ExitRule, check_threshold, get_rule

CALIBRATED_ON = ("validation", "given")


def _rule(rule: ExitRule | str) -> ExitRule:
    return get_rule(rule) if isinstance(rule, str) else rule


def rule_scores(rule: ExitRule | str, logits: torch.Tensor) -> torch.Tensor:
    """The rule's score of every step and sample, float64: ``[T, B, K] -> [T, B]``.

        >>> rule_scores("confidence", torch.zeros(2, 1, 4)).tolist()
        [[0.25], [0.25]]
    """
    return _rule(rule).score(prefix_probabilities(logits))


def exit_steps(rule: ExitRule | str, logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """``e_b = min{t : fires(score_t,b, c)}``, else T: ``[T, B, K] -> [B]`` int64 in 1..T.

        >>> logits = torch.tensor([[[0.0, 0.0], [4.0, 0.0]], [[0.0, 4.0], [4.0, 0.0]]])
        >>> exit_steps("confidence", logits, 0.8).tolist()   # sample 0 is never that sure
        [2, 1]
    """
    rule = _rule(rule)
    threshold = check_threshold(rule, threshold)
    fired = rule.fires(rule_scores(rule, logits), threshold)
    fired[-1] = True  # a sample the rule never stops runs all T steps
    # argmax returns the first of equal maxima: the first step that fires
    return fired.to(torch.uint8).argmax(0).to(torch.int64) + 1


@dataclass(frozen=True)
class ExitOutcome:
    """Where each sample stopped (``steps`` [B], 1..T) and what it predicted there
    (``predictions`` [B]). Checked on creation: a step outside 1..T would index past the run
    and price, or count in a histogram, steps that never happened."""

    steps: torch.Tensor
    predictions: torch.Tensor
    timesteps: int

    def __post_init__(self) -> None:
        if self.steps.shape != self.predictions.shape or self.steps.dim() != 1:
            raise ValueError(f"steps {list(self.steps.shape)} and predictions "
                             f"{list(self.predictions.shape)} must both be [B]")
        if len(self.steps) and not (1 <= int(self.steps.min()) and
                                    int(self.steps.max()) <= self.timesteps):
            raise ValueError(f"exit steps must lie in 1..{self.timesteps}")

    def accuracy(self, labels: torch.Tensor) -> float:
        return float((self.predictions == labels.to(self.predictions.device)).double().mean())

    @property
    def mean_timesteps(self) -> float:
        return float(self.steps.double().mean())

    @property
    def histogram(self) -> list[int]:
        """How many samples exit at t = 1..T."""
        return torch.bincount(self.steps - 1, minlength=self.timesteps).tolist()


def apply_rule(rule: ExitRule | str, logits: torch.Tensor, threshold: float) -> ExitOutcome:
    """Each sample's exit step and its prediction there, ``argmax z̄_{e_b}``.

        >>> logits = torch.tensor([[[0.0, 0.0], [4.0, 0.0]], [[0.0, 4.0], [4.0, 0.0]]])
        >>> apply_rule("confidence", logits, 0.8).predictions.tolist()
        [1, 0]
    """
    steps = exit_steps(rule, logits, threshold)
    predictions = prefix_logits(logits.detach()).argmax(-1)  # [T, B]
    chosen = predictions.gather(0, (steps - 1).to(predictions.device).view(1, -1))[0]
    return ExitOutcome(steps, chosen, logits.shape[0])


def oracle_steps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The earliest t after which the prefix prediction stays correct, per sample; a sample
    wrong at T has none and counts as T (it would run to the end): ``[T, B, K] -> [B]``.

        t* = min { t : argmax z̄_s = y for every s in t..T },  or T

        >>> logits = torch.tensor([[[0.0, 1.0]], [[3.0, 0.0]], [[0.0, 1.0]]])
        >>> oracle_steps(logits, torch.tensor([0])).tolist()   # right from step 2 on
        [2]
    """
    _check(logits, labels)
    right = prefix_logits(logits.detach()).argmax(-1) == labels.to(logits.device).view(1, -1)
    # steps from the end that are all right: the length of the correct suffix
    suffix = right.flip(0).to(torch.int64).cumprod(0).sum(0)
    timesteps = logits.shape[0]
    return torch.where(suffix > 0, timesteps - suffix + 1, timesteps)


@dataclass(frozen=True)
class Calibration:
    """The threshold :func:`calibrate` chose and what it gives on the validation split."""

    rule: str
    threshold: float
    drop_points: float
    accuracy: float          # validation accuracy with the exit
    mean_timesteps: float    # validation mean exit step
    full_accuracy: float     # validation accuracy at T
    candidates: int          # thresholds compared


def _check_drop(drop_points: Any) -> float:
    number = isinstance(drop_points, int | float) and not isinstance(drop_points, bool)
    if not number or not 0 <= drop_points <= 100:  # NaN fails the comparison too
        raise ConfigError(f"the accuracy drop an exit may cost must be in [0, 100] points, "
                          f"not {drop_points!r}")
    return float(drop_points)


def calibrate(rule: ExitRule | str, val_logits: torch.Tensor, val_labels: torch.Tensor,
              drop_points: float) -> Calibration:
    """The threshold with the fewest mean timesteps whose validation accuracy is within
    ``drop_points`` accuracy points of the full-T validation accuracy.

    Every threshold that changes an exit is compared: the distinct running-best scores
    ``m_t,b = best_{s≤t} score_s,b`` (t < T) and one just past the surest of them (no sample
    exits early). With ``m`` sorted, one threshold's outcome is a prefix sum, because a sample
    exits at ``e_b(c) = 1 + #{t < T : m_t,b fails c}``, so

        mean steps(c) = 1 + #{(t, b) : m_t,b fails c} / B
        correct(c)    = Σ_b ok_1,b + Σ_{(t, b) : m_t,b fails c} (ok_t+1,b − ok_t,b)

    with ``ok_t,b = [argmax z̄_t,b = y_b]``. Ties go to the higher accuracy, then to the more
    cautious threshold. Reads only the logits and labels it is given: pass validation ones.

        >>> logits = torch.tensor([[[3.0, 0.0], [0.0, 0.0]], [[3.0, 0.0], [0.0, 3.0]]])
        >>> chosen = calibrate("confidence", logits, torch.tensor([0, 1]), 0.0)
        >>> chosen.mean_timesteps, chosen.accuracy   # sample 0 stops at 1, sample 1 runs on
        (1.5, 1.0)
    """
    rule = _rule(rule)
    drop = _check_drop(drop_points)
    _check(val_logits, val_labels)
    timesteps, samples = val_logits.shape[:2]
    if samples == 0:
        raise NeuroKDError("calibrating an exit rule needs validation samples; there are none")
    sure = rule_scores(rule, val_logits).cpu().numpy()
    sure = sure if rule.fires_above else -sure  # "fires" is now "≥ c" for every rule
    labels = val_labels.to(val_logits.device).view(1, -1)
    ok = (prefix_logits(val_logits.detach()).argmax(-1) == labels).cpu().numpy().astype(np.int64)
    best = np.maximum.accumulate(sure, axis=0)[:-1].ravel()  # m_t,b for t < T
    gain = (ok[1:] - ok[:-1]).ravel()                        # ok_t+1,b − ok_t,b
    order = np.argsort(best, kind="stable")
    best = best[order]
    gained = np.concatenate(([0], np.cumsum(gain[order])))  # gained[n]: the n lowest m's gains
    candidates = np.unique(best)
    bound = rule.high if rule.fires_above else -rule.low  # the most cautious threshold
    past = np.nextafter(best[-1], np.inf) if best.size else bound
    if past <= bound:
        candidates = np.append(candidates, past)
    failing = np.searchsorted(best, candidates, side="left")  # #{m < c}
    correct = ok[0].sum() + gained[failing]
    steps = samples + failing
    full = int(ok[-1].sum())
    allowed = np.flatnonzero(100.0 * (full - correct) <= drop * samples + 1e-9)
    if not allowed.size:
        raise NeuroKDError(
            f"no {rule.name} threshold keeps the validation accuracy within {drop:g} points "
            f"of its full-T {100 * full / samples:.2f}% (the surest scores already exit "
            "early); allow a larger drop or give a threshold")
    pick = allowed[np.lexsort((-candidates[allowed], -correct[allowed], steps[allowed]))[0]]
    threshold = float(candidates[pick]) if rule.fires_above else -float(candidates[pick])
    return Calibration(rule.name, threshold, drop, float(correct[pick]) / samples,
                       float(steps[pick]) / samples, full / samples, len(candidates))


def exit_record(rule: ExitRule | str, val_logits: torch.Tensor, val_labels: torch.Tensor,
                test_logits: torch.Tensor, test_labels: torch.Tensor,
                threshold: float | None = None, drop_points: float | None = None
                ) -> dict[str, Any]:
    """metrics.json's ``exit``: the rule applied with ``threshold``, or calibrated on the
    validation logits with ``drop_points`` (exactly one of the two), then measured on both
    splits. The test split is read only after the threshold is fixed.

        >>> logits = torch.tensor([[[3.0, 0.0]], [[3.0, 0.0]]])
        >>> labels = torch.tensor([0])
        >>> exit_record("margin", logits, labels, logits, labels, threshold=0.5)["mean_timesteps"]
        1.0
    """
    rule = _rule(rule)
    if (threshold is None) == (drop_points is None):
        raise ConfigError(f"the {rule.name} exit rule needs a threshold or an accuracy drop to "
                          "calibrate one, not both and not neither")
    if threshold is None:
        threshold = calibrate(rule, val_logits, val_labels, drop_points).threshold
    threshold = check_threshold(rule, threshold)
    validation = apply_rule(rule, val_logits, threshold)
    test = apply_rule(rule, test_logits, threshold)  # the threshold is fixed by now
    return {"rule": rule.name, "threshold": threshold,
            "calibrated_on": "given" if drop_points is None else "validation",
            "drop_points": None if drop_points is None else float(drop_points),
            "timesteps": int(test_logits.shape[0]),
            "validation_accuracy": validation.accuracy(val_labels),
            "validation_mean_timesteps": validation.mean_timesteps,
            "test_accuracy": test.accuracy(test_labels),
            "mean_timesteps": test.mean_timesteps, "exit_histogram": test.histogram,
            "oracle_mean_timesteps": float(oracle_steps(test_logits, test_labels)
                                           .double().mean())}


_NUMBERS = ("validation_accuracy", "validation_mean_timesteps", "test_accuracy",
            "mean_timesteps", "oracle_mean_timesteps")


def checked_exit_record(value: Any, where: str) -> dict[str, Any] | None:
    """An ``exit`` record read from a file (metrics.json, a checkpoint), checked field by field
    and reduced to the fields :func:`exit_record` writes (it travels into exports' metadata);
    ``None`` stays ``None``. NeuroKDError naming ``where`` and the field otherwise."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise NeuroKDError(f"{where}: exit is a {type(value).__name__}, not a record")
    if value.get("rule") not in EXIT_RULES:
        raise NeuroKDError(f"{where}: exit.rule {value.get('rule')!r} is not one of "
                           f"{', '.join(EXIT_RULES)}")
    try:
        threshold = check_threshold(value["rule"], value.get("threshold"))
    except ConfigError as exc:
        raise NeuroKDError(f"{where}: exit.threshold: {exc}") from None
    if value.get("calibrated_on") not in CALIBRATED_ON:
        raise NeuroKDError(f"{where}: exit.calibrated_on must be one of "
                           f"{', '.join(CALIBRATED_ON)}, not {value.get('calibrated_on')!r}")
    steps = value.get("timesteps")
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= 1_000_000:
        raise NeuroKDError(f"{where}: exit.timesteps must be a whole number >= 1, not "
                           f"{steps!r}")
    record = {"rule": value["rule"], "threshold": threshold,
              "calibrated_on": value["calibrated_on"], "drop_points": value.get("drop_points"),
              "timesteps": steps}
    drop = record["drop_points"]
    if drop is not None and not (_finite(drop) and drop >= 0):
        raise NeuroKDError(f"{where}: exit.drop_points must be a number >= 0, not {drop!r}")
    for key in _NUMBERS:
        if not _finite(value.get(key)) or value[key] < 0:
            raise NeuroKDError(f"{where}: exit.{key} must be a finite number >= 0, not "
                               f"{value.get(key)!r}")
        record[key] = float(value[key])
    histogram = value.get("exit_histogram")
    if not isinstance(histogram, list) or len(histogram) != steps or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in histogram):
        raise NeuroKDError(f"{where}: exit.exit_histogram must list {steps} counts >= 0")
    record["exit_histogram"] = list(histogram)
    return record


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and \
        math.isfinite(value)
