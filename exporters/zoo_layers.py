"""Two forms of spikingjelly's model zoo as the plain layers they are in eval mode.

``torch.flatten(x, start, end)`` written in a ``forward`` counts its dims on the multi-step
``[T, B, ...]`` tensor, while the layer records see ``[T*B, ...]``; ``layer.VotingLayer`` (the
mean over each group of ``voting_size`` outputs) is a fixed linear map. Kept apart from
``graph.py``, which turns fx nodes into records with them.
"""

from __future__ import annotations

import torch
from torch import nn


def functional_flatten(args: tuple, kwargs: dict, time_merged: bool) -> nn.Flatten | str:
    """The flatten layer of a ``torch.flatten`` / ``Tensor.flatten`` call on the records'
    ``[T*B, ...]``, or why there is none. ``time_merged``: the call saw ``[T*B, ...]`` itself
    (inside a SeqToANN container)."""
    bound = dict(zip(("start_dim", "end_dim"), args, strict=False)) | dict(kwargs)
    start, end = bound.get("start_dim", 0), bound.get("end_dim", -1)
    if not all(isinstance(d, int) for d in (start, end)):
        return "flatten with computed dims"
    if not time_merged:  # dims count T and B: the records merge them
        if 0 <= start < 2 or 0 <= end < 2:
            return f"flatten(start_dim={start}) merges the time/batch axes"
        start, end = (d - 1 if d >= 0 else d for d in (start, end))
    return nn.Flatten(start, end)


class VotingLinear(nn.Linear):
    """spikingjelly's VotingLayer as the fixed linear map it is: output ``k`` is the mean of
    inputs ``k*v .. k*v+v-1`` (``avg_pool1d`` with kernel = stride = ``v``; a remainder of
    fewer than ``v`` inputs is dropped, as avg_pool1d drops it). Its size is only known from
    the input, so the weights are made on the first forward (the shape pass)."""

    def __init__(self, voting_size: int):
        super().__init__(voting_size, 1, bias=False)
        self.voting_size = int(voting_size)
        self.fit(voting_size)

    def fit(self, features: int) -> None:
        outputs = features // self.voting_size
        weight = torch.zeros(outputs, features)
        for k in range(outputs):
            weight[k, k * self.voting_size:(k + 1) * self.voting_size] = 1.0 / self.voting_size
        self.in_features, self.out_features = features, outputs
        self.weight = nn.Parameter(weight, requires_grad=False)
