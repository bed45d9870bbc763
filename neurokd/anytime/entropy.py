"""The ``entropy`` exit rule (DT-SNN): stop once the prefix softmax is nearly one-hot.

    score_t = −Σ_k p_t,k log p_t,k / log K,   p_t = softmax(z̄_t);   exit at the first t with
    score_t ≤ c

Normalised by ``log K`` so one threshold ``c`` in [0, 1] means the same for 10 or 100 classes:
0 is one-hot, 1 uniform.
"""

from __future__ import annotations

import math

import torch


def normalised_entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """``H(p_t) / log K`` in [0, 1]: ``[T, B, K] -> [T, B]`` (K ≥ 2).

        >>> normalised_entropy(torch.tensor([[[0.5, 0.5], [1.0, 0.0]]])).tolist()
        [[1.0, 0.0]]
    """
    classes = probabilities.shape[-1]
    if classes < 2:
        raise ValueError(f"the entropy of {classes} class is always 0: it needs K >= 2")
    # xlogy: 0·log 0 = 0 for a class the softmax has underflowed to zero (log would give NaN);
    # 0 − Σ rather than −Σ, so a one-hot softmax scores 0.0, not −0.0
    entropy = (0.0 - torch.special.xlogy(probabilities, probabilities).sum(-1)) / math.log(classes)
    # rounding can leave a uniform softmax a hair above 1 (or one-hot a hair below 0); the
    # threshold range is [0, 1], so the score must be too
    return entropy.clamp(0.0, 1.0)
