"""What every loss returns: its named terms and their total."""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LossValue:
    """A loss's total and its terms, as mdistiller's distillers return them.

    The terms are the weighted summands (``(1-α)·CE``, ``α·τ²·KL``, ``−λ·H``, ``w·MSE``), so
    adding them in order gives ``total`` exactly: the history can show what moved without a
    second formula that could drift from the one trained on.
    """

    total: torch.Tensor
    terms: dict[str, torch.Tensor]

    @classmethod
    def of(cls, **terms: torch.Tensor) -> LossValue:
        """The terms in the order given; the total is their left-to-right sum."""
        if not terms:
            raise ValueError("a loss needs at least one term")
        return cls(functools.reduce(operator.add, terms.values()), dict(terms))

    def plus(self, name: str, term: torch.Tensor) -> LossValue:
        """This value with one more term added at the end (the feature losses of a hybrid)."""
        if name in self.terms:
            raise ValueError(f"term {name!r} given twice")
        return LossValue(self.total + term, {**self.terms, name: term})
