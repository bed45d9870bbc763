"""The exit rules: one :class:`ExitRule` per name in ``EXIT_RULES``; the ``--exit-rule`` choices,
the threshold checks and the table of docs/anytime.md are generated from it.

Adding a rule: a module beside this one with its score function (its equation in the
docstring) and one line below.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ConfigError
from .confidence import confidence
from .entropy import normalised_entropy
from .margin import margin


@dataclass(frozen=True)
class ExitRule:
    """One exit rule. ``score(p) -> [T, B]`` scores the prefix softmax ``p`` ``[T, B, K]``; the
    rule fires at a step whose score is ``≥ c`` (``fires_above``) or ``≤ c`` (otherwise), for a
    threshold ``c`` in ``[low, high]``. ``equation`` and ``summary`` are the docs table's text.

        >>> EXIT_RULES["confidence"].fires(torch.tensor([0.4, 0.9]), 0.8).tolist()
        [False, True]
    """

    name: str
    score: Callable[[torch.Tensor], torch.Tensor]
    fires_above: bool
    low: float
    high: float
    equation: str
    summary: str

    def __post_init__(self) -> None:
        # The name is an option value and a metrics.json value; the range bounds every
        # threshold a user or a file gives, so an empty or inverted one would accept nothing
        # (or anything) without saying so.
        if not self.name or not self.name.replace("-", "").isalnum():
            raise ValueError(f"exit rule name {self.name!r}: letters, digits and '-' only")
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"{self.name}: threshold range [{self.low}, {self.high}] is empty "
                             "or not finite")

    def fires(self, scores: torch.Tensor, threshold: float) -> torch.Tensor:
        """Where the rule stops: ``scores ≥ c`` or ``scores ≤ c``, elementwise."""
        return scores >= threshold if self.fires_above else scores <= threshold

    @property
    def comparison(self) -> str:
        return "≥" if self.fires_above else "≤"


_RULES = (
    ExitRule("confidence", confidence, True, 0.0, 1.0, "max_k p_t,k ≥ c",
             "the prefix softmax's top probability (SEENN)"),
    ExitRule("entropy", normalised_entropy, False, 0.0, 1.0, "−Σ_k p_t,k log p_t,k / log K ≤ c",
             "the prefix softmax's entropy, normalised to [0, 1] (DT-SNN)"),
    ExitRule("margin", margin, True, 0.0, 1.0, "p_t,(1) − p_t,(2) ≥ c",
             "the prefix softmax's top-1 minus top-2 probability (Cutoff)"),
)
EXIT_RULES: dict[str, ExitRule] = {rule.name: rule for rule in _RULES}


def rule_names() -> tuple[str, ...]:
    return tuple(EXIT_RULES)


def get_rule(name: Any) -> ExitRule:
    """Rule ``name``; ConfigError listing the rules for any other value."""
    rule = EXIT_RULES.get(name) if isinstance(name, str) else None
    if rule is None:
        raise ConfigError(f"unknown exit rule {name!r}; choose from {', '.join(EXIT_RULES)}")
    return rule


def check_threshold(rule: ExitRule | str, threshold: Any) -> float:
    """``threshold`` as a float once it is a number inside the rule's range; ConfigError else.

        >>> check_threshold("entropy", 0.25)
        0.25
    """
    rule = get_rule(rule) if isinstance(rule, str) else rule
    number = isinstance(threshold, int | float) and not isinstance(threshold, bool)
    if not number or not rule.low <= threshold <= rule.high:  # NaN fails the comparison too
        raise ConfigError(f"the {rule.name} exit rule takes a threshold in [{rule.low:g}, "
                          f"{rule.high:g}], not {threshold!r}")
    return float(threshold)
