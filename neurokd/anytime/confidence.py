"""The ``confidence`` exit rule (SEENN, NeurIPS 2023): stop once the prefix softmax is sure.

    score_t = max_k p_t,k,   p_t = softmax(z̄_t);   exit at the first t with score_t ≥ c

``c`` in [0, 1]; the score lies in [1/K, 1], so ``c ≤ 1/K`` stops every sample at step 1.
"""

from __future__ import annotations

import torch


def confidence(probabilities: torch.Tensor) -> torch.Tensor:
    """``max_k p_t,k``: ``[T, B, K] -> [T, B]``.

        >>> confidence(torch.tensor([[[0.75, 0.25]]])).tolist()
        [[0.75]]
    """
    return probabilities.max(dim=-1).values
