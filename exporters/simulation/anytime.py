"""The accuracy after each timestep and the early exit of a simulated run, from the backend's
own per-step logits: the one place every backend (ONNX Runtime, Lava) computes them.

The exit applied is ``--exit-rule R --exit-threshold C`` when given, else the one the export
records (its ``neurokd.exit`` metadata, checked first), none with ``--no-exit``
(:func:`run_exit`). A run with an exit counts, beside its totals, the events of each sample's
frames t < e_b only (:class:`ExitTally`): the student is causal, so those are the counts of
running sample b for e_b steps, which ``simulate --save`` writes for ``energy report
--from-sim`` (``neurokd.energy.spike_counts``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from neurokd.anytime import accuracy_by_timestep, checked_exit_record, exit_steps
from neurokd.energy.estimation import ExitChoice, choose_exit, exit_summary
from neurokd.energy.events import EventCounts
from neurokd.energy.spike_counts import ExitRun


def check_exit_options(rule: str | None, threshold: float | None, no_exit: bool) -> None:
    """Refuse bad ``--exit-rule/--exit-threshold/--no-exit`` values (one line) before a run."""
    choose_exit(None, rule, threshold, no_exit)


def run_exit(recorded: Any, where: str, rule: str | None = None,
             threshold: float | None = None, no_exit: bool = False) -> ExitChoice | None:
    """The exit a simulation applies: the options', else ``recorded`` (the export's exit
    record, checked field by field even when overridden: a damaged file is refused, naming
    ``where``), else none."""
    return choose_exit(checked_exit_record(recorded, where), rule, threshold, no_exit)


class ExitTally:
    """Each batch's exit steps under ``exit`` (None: no exit), and the frames they keep.

    ``mask(logits)`` takes a batch's per-step logits ``[T, B, K]`` and gives the bool ``[T, B]``
    of the frames t < e_b (None without an exit); ``sum(values, mask)`` sums ``values`` over
    those frames (``[T, B, ...]`` or, ``time_major=False``, ``[B, T, ...]``)."""

    def __init__(self, exit: ExitChoice | None, timesteps: int):
        self.exit, self.timesteps, self._steps = exit, timesteps, []

    def mask(self, logits: np.ndarray) -> np.ndarray | None:
        if self.exit is None:
            return None
        steps = exit_steps(self.exit.rule, torch.from_numpy(np.asarray(logits)),
                           self.exit.threshold).numpy()
        self._steps.append(steps)
        return np.arange(self.timesteps).reshape(-1, 1) < steps.reshape(1, -1)

    @staticmethod
    def sum(values: np.ndarray, mask: np.ndarray, time_major: bool = True) -> np.ndarray:
        """``values`` summed over samples and the frames of ``mask`` (float64, exact counts)."""
        kept = mask if time_major else mask.T
        kept = kept.reshape(kept.shape + (1,) * (values.ndim - 2))
        return np.where(kept, values, 0).sum((0, 1), dtype=np.float64)

    @staticmethod
    def graded(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Graded input ``[B, ...]``, repeated at every step: its non-zero values x the steps
        each sample ran."""
        steps = mask.sum(0).reshape((-1,) + (1,) * (x.ndim - 1))
        return ((np.asarray(x) != 0) * steps).sum(0, dtype=np.float64)

    @property
    def steps(self) -> np.ndarray | None:
        """Every sample's exit step so far (int64 [N], 1..T), None without an exit."""
        if self.exit is None:
            return None
        return np.concatenate(self._steps).astype(np.int64) if self._steps \
            else np.zeros(0, np.int64)

    def run(self, counts: EventCounts | None) -> ExitRun | None:
        """What ``--save`` writes of the exit: these steps and ``counts`` (over t < e_b)."""
        if self.exit is None or counts is None:
            return None
        return ExitRun(self.exit.rule, self.exit.threshold, self.steps, counts)

    @property
    def frames(self) -> int:
        """The sample steps the exit's counts cover: sum(e_b)."""
        return int(self.steps.sum())


def anytime(logits: np.ndarray, labels: np.ndarray, tally: ExitTally
            ) -> tuple[list[float], dict | None]:
    """The accuracy after t = 1..T steps of the run's logits ``[T, N, K]`` and, with an exit,
    its record (rule, threshold, origin, accuracy, mean_timesteps, exit_histogram: the energy
    report's ``exit``, ``neurokd.energy.estimation.exit_summary``) at the tally's steps."""
    logits_t = torch.from_numpy(np.ascontiguousarray(logits))
    labels_t = torch.from_numpy(np.asarray(labels)).long()
    by_step = accuracy_by_timestep(logits_t, labels_t)
    if tally.exit is None:
        return by_step, None
    return by_step, exit_summary(tally.exit, torch.from_numpy(tally.steps), logits_t, labels_t)
