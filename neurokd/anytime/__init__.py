"""Any-time students: what a spiking student predicts after each of its T timesteps, and when
it may stop.

A student gives logits ``[T, B, K]``, one row per timestep. Its prediction after the first t
steps is the argmax of their mean (:func:`prefix_logits`); :func:`accuracy_by_timestep` is
that prediction's accuracy for t = 1..T (its last element is the student's accuracy),
:func:`accuracy_at_timestep` the accuracy of step t alone. An exit rule (:data:`EXIT_RULES`,
one module and one registry line each) scores the softmax of the prefix mean at every step and
stops a sample at the first step its score passes a threshold (:func:`exit_steps`; a sample
that never passes runs all T). :func:`calibrate` chooses the threshold on the validation split,
:func:`oracle_steps` is the bound no rule can beat, :func:`exit_record` the ``exit`` record of
metrics.json (docs/anytime.md).

What belongs here: computations on per-timestep logits and labels, nothing else. This room
depends only on torch, numpy, ``errors`` and ``text``, so the training loop, the config's
checks, the exporters and the energy report can all share it.

    >>> import torch
    >>> logits = torch.tensor([[[2.0, 0.0]], [[0.0, 3.0]]])  # T=2, B=1, K=2
    >>> accuracy_by_timestep(logits, torch.tensor([1]))      # step 1 says 0, steps 1..2 say 1
    [0.0, 1.0]
"""

from .curves import (
    accuracy_at_timestep,
    accuracy_by_timestep,
    correct_by_timestep,
    prefix_logits,
    prefix_probabilities,
)
from .exits import (
    Calibration,
    ExitOutcome,
    apply_rule,
    calibrate,
    checked_exit_record,
    exit_record,
    exit_steps,
    oracle_steps,
    rule_scores,
)
from .registry import EXIT_RULES, ExitRule, check_threshold, get_rule, rule_names

__all__ = [
    "prefix_logits", "prefix_probabilities", "correct_by_timestep", "accuracy_by_timestep",
    "accuracy_at_timestep", "EXIT_RULES", "ExitRule", "get_rule", "rule_names",
    "check_threshold", "rule_scores", "exit_steps", "apply_rule", "ExitOutcome", "calibrate",
    "Calibration", "oracle_steps", "exit_record", "checked_exit_record",
]
