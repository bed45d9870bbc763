"""The accuracy of a student's prediction after every timestep.

A prediction after t steps is the argmax of the prefix mean ``z̄_t = (1/t) Σ_{s≤t} z_s``, the
same average the full-T prediction takes (t = T), so a student stopped after t steps predicts
what these curves count.
"""

from __future__ import annotations

import torch


def _check(logits: torch.Tensor, labels: torch.Tensor | None = None) -> None:
    # A [B, K] tensor here would be read as B timesteps of one-sample batches: refuse it.
    if logits.dim() != 3:
        raise ValueError(f"per-timestep logits must be [T, B, K], not {list(logits.shape)}")
    if labels is not None and (labels.dim() != 1 or len(labels) != logits.shape[1]):
        raise ValueError(f"labels {list(labels.shape)} do not fit logits "
                         f"{list(logits.shape)} (expected [B])")


def prefix_logits(logits: torch.Tensor) -> torch.Tensor:
    """The prefix means ``z̄_t = (1/t) Σ_{s=1..t} z_s``: ``[T, B, K] -> [T, B, K]``.

        >>> prefix_logits(torch.tensor([[[1.0, 0.0]], [[3.0, 2.0]]])).tolist()
        [[[1.0, 0.0]], [[2.0, 1.0]]]
    """
    _check(logits)
    steps = torch.arange(1, logits.shape[0] + 1, dtype=logits.dtype, device=logits.device)
    return logits.cumsum(0) / steps.view(-1, 1, 1)


def prefix_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """``p_t = softmax(z̄_t)`` in float64 (the exit rules' scores compare against thresholds
    chosen from these same numbers, so both sides are computed once, in one precision):
    ``[T, B, K] -> [T, B, K]``.

        >>> prefix_probabilities(torch.zeros(1, 1, 2)).tolist()
        [[[0.5, 0.5]]]
    """
    return torch.softmax(prefix_logits(logits.detach().double()), dim=-1)


def correct_by_timestep(logits: torch.Tensor, labels: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """How many samples each step gets right: ``(cumulative [T], single [T])`` int64 counts,
    cumulative from ``argmax z̄_t``, single from ``argmax z_t``. Counts, not fractions, so
    batches (and ranks) add up exactly.

        >>> logits = torch.tensor([[[2.0, 0.0]], [[0.0, 3.0]]])
        >>> [c.tolist() for c in correct_by_timestep(logits, torch.tensor([1]))]
        [[0, 1], [0, 1]]
    """
    _check(logits, labels)
    labels = labels.to(logits.device).view(1, -1)
    cumulative = (prefix_logits(logits.detach()).argmax(-1) == labels).sum(1)
    single = (logits.detach().argmax(-1) == labels).sum(1)
    return cumulative, single


def accuracy_by_timestep(logits: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """``acc(t) = mean_b [argmax z̄_t,b = y_b]`` for t = 1..T; the last is the full-T accuracy.

        >>> accuracy_by_timestep(torch.tensor([[[2.0, 0.0]], [[0.0, 3.0]]]), torch.tensor([1]))
        [0.0, 1.0]
    """
    cumulative, _ = correct_by_timestep(logits, labels)
    return [count / max(len(labels), 1) for count in cumulative.tolist()]


def accuracy_at_timestep(logits: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """``acc_t = mean_b [argmax z_t,b = y_b]``: each timestep's logits alone, t = 1..T.

        >>> accuracy_at_timestep(torch.tensor([[[2.0, 0.0]], [[0.0, 3.0]]]), torch.tensor([0]))
        [1.0, 0.0]
    """
    _, single = correct_by_timestep(logits, labels)
    return [count / max(len(labels), 1) for count in single.tolist()]
