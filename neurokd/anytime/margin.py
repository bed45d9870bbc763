"""The ``margin`` exit rule (Cutoff, 2025): stop once the top class leads the runner-up by c.

    score_t = p_t,(1) − p_t,(2),   p_t = softmax(z̄_t) sorted descending;   exit at the first t
    with score_t ≥ c

``c`` in [0, 1]: 0 stops every sample at step 1, 1 only a one-hot softmax.
"""

from __future__ import annotations

import torch


def margin(probabilities: torch.Tensor) -> torch.Tensor:
    """``p_(1) − p_(2)``: ``[T, B, K] -> [T, B]`` (K ≥ 2).

        >>> margin(torch.tensor([[[0.625, 0.125, 0.25]]])).tolist()
        [[0.375]]
    """
    if probabilities.shape[-1] < 2:
        raise ValueError("the margin needs at least 2 classes")
    top = probabilities.topk(2, dim=-1).values
    return top[..., 0] - top[..., 1]
