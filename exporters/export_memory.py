"""Refuse an export up front when it would need more memory than the machine has.

An export holds the model, a private copy of it, a folded (BatchNorm, pools) or quantized copy
of every weight and, while it checks the file, the activations of every layer for one batch of
check inputs over T steps, twice (the reference run and the candidate). A network whose weights
fit comfortably can still be far too big to export: a VGG without max pools has a
``512*32*32 x 4096`` linear layer, 8.6 GB of fp32 weights, and its Loihi export grew past 21 GB
before the kernel killed it without a message. So the estimate is made from the records before
anything is copied, and the refusal names the size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from neurokd.errors import NeuroKDError
from neurokd.files import budget as limits

WEIGHT_COPIES = 3        # private copy + folded/quantized copy + the file's own buffer
ACTIVATION_COPIES = 2    # reference run and candidate run of one check batch


def export_bytes(records: Sequence[Any], timesteps: int, batch_size: int) -> tuple[int, int]:
    """(weight bytes, activation bytes) the export needs beyond the model already in memory.
    ``records``: a traced student's layer records (``graph.LayerRecord``: ``module``,
    ``output_shape``), taken as they are so this module needs nothing of the graph's."""
    weights = 0
    for record in records:
        if record.module is not None:
            weights += sum(p.numel() * p.element_size() for p in record.module.parameters())
            weights += sum(b.numel() * b.element_size() for b in record.module.buffers())
    activations = sum(math.prod(r.output_shape) for r in records if r.output_shape)
    frames = max(1, timesteps) * max(1, batch_size)
    return WEIGHT_COPIES * weights, ACTIVATION_COPIES * 4 * activations * frames


def require_memory(records: Sequence[Any], timesteps: int, batch_size: int) -> None:
    """Raise, naming the sizes, when the export would need more than neurokd may use
    (``--max-memory``, else 75% of what the machine has available)."""
    weights, activations = export_bytes(records, timesteps, batch_size)
    have = limits.budget()
    if weights + activations > have:
        raise NeuroKDError(
            f"the export would need about {limits.gib(weights + activations)} "
            f"({limits.gib(weights)} for {WEIGHT_COPIES} copies of the weights, "
            f"{limits.gib(activations)} of activations for a check batch of {batch_size} over "
            f"T={timesteps}), more than the {limits.gib(have)} neurokd may use here "
            "(--max-memory); nothing written (make the layers smaller, e.g. pool before the "
            "linear layers)")
