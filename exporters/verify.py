"""What every exporter needs to prove an export right: a private copy, a reference run, a comparison.

An export is compared with the PyTorch model it came from (eager spikingjelly, the
independent computation) on inputs chosen by ``neurokd.student.inputs.source_inputs`` (the run's test
split; random inputs only when asked for). ``compare`` walks the inputs in chunks, so the
batch axis of the exported model is exercised at several sizes (1, ``batch_size`` and the
remainder). Inputs with a time axis (event frames, rate-coded spikes, ``[T, N, ...]``) are
chunked along their batch axis, 1.

Float arithmetic is not associative: an export that computes the same network in another
order (BatchNorm folded into the weights, another convolution algorithm) can put a membrane a
rounding error to the other side of the threshold, and that one flipped spike then changes
the rest of the sample. Such samples (:func:`tie_samples`: the first difference is one single
neuron) are counted apart; every other sample must match, and they may be at most 1% of the
samples. A wrong export differs in many neurons at once and fails.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from spikingjelly.activation_based import functional
from torch import nn

from neurokd.errors import NeuroKDError

# (logits, spikes per neuron layer) for one chunk of inputs; logits [T, B, K] (students) or
# [B, K] (teachers), spikes [T, B, ...]. numpy, so ONNX Runtime results plug in directly.
RunFn = Callable[[torch.Tensor], tuple[np.ndarray, list[np.ndarray]]]


def private_copy(model: nn.Module) -> nn.Module:
    """Export works on a CPU copy in eval mode: the caller's model keeps device, mode, state."""
    clone = copy.deepcopy(model).cpu().eval()
    functional.reset_net(clone)
    return clone


def eager_run(model: nn.Module, neuron_modules: list[nn.Module]) -> RunFn:
    """The model itself, spikes taken by forward hooks on its neuron modules."""

    def run(x: torch.Tensor) -> tuple[np.ndarray, list[np.ndarray]]:
        captured: dict[int, torch.Tensor] = {}
        hooks = [m.register_forward_hook(lambda mod, _i, out, k=k: captured.__setitem__(k, out))
                 for k, m in enumerate(neuron_modules)]
        try:
            functional.reset_net(model)
            with torch.no_grad():
                logits = model(x)
        finally:
            for hook in hooks:
                hook.remove()
            functional.reset_net(model)
        return logits.numpy(), [captured[k].numpy() for k in range(len(neuron_modules))]

    return run


@dataclass
class Agreement:
    """How closely an export reproduces the PyTorch model on the verification inputs."""

    samples: int
    batch_sizes: tuple[int, ...]
    max_abs_logit_error: float
    logit_scale: float            # largest |logit| of the reference: errors are relative to it
    spike_mismatches: int
    spikes_checked: int
    argmax_agreement: float       # share of samples with the same predicted class
    firing_rate: float = 0.0      # mean reference spike rate: 0 would make the check hollow
    first_mismatch: str = ""      # where spikes first differed, for the error message
    tie_samples: int = 0          # diverged from one flipped spike (a threshold tie): apart

    def check(self, target: str, tolerance: float, spikes_exact: bool = True) -> None:
        """Raise unless argmax agrees everywhere, logits within ``tolerance`` (scaled by
        max(1, |logit|)), and, with ``spikes_exact``, every spike identical: all on the
        samples without a threshold tie, which may be at most 1% of them (at least 1)."""
        bound = tolerance * max(1.0, self.logit_scale)
        problems = []
        if spikes_exact and self.spike_mismatches:
            problems.append(f"{self.spike_mismatches} of {self.spikes_checked} spikes differ "
                            f"(first: {self.first_mismatch})")
        if not self.max_abs_logit_error <= bound:
            problems.append(f"logits differ by up to {self.max_abs_logit_error:.3g} "
                            f"(allowed {bound:.3g})")
        if self.argmax_agreement < 1.0:
            problems.append(f"predicted class differs on {1 - self.argmax_agreement:.2%} "
                            "of samples")
        if self.tie_samples > max(1, self.samples // 100):
            problems.append(f"{self.tie_samples} samples diverge from a single flipped spike, "
                            "more than the 1% that float-rounding ties at a threshold explain")
        if problems:
            raise NeuroKDError(f"{target} export does not reproduce the PyTorch model on "
                               f"{self.samples} samples: {'; '.join(problems)}; nothing written")


def take(inputs: torch.Tensor, part: slice, batch_axis: int = 0) -> torch.Tensor:
    """The samples ``part`` of ``inputs`` along its batch axis (0, or 1 for ``[T, N, ...]``)."""
    return inputs[part] if batch_axis == 0 else inputs[:, part]


def chunks(count: int, batch_size: int) -> Iterator[slice]:
    """One sample first (the smallest batch), then ``batch_size`` at a time."""
    start = 0
    while start < count:
        stop = min(count, start + (1 if start == 0 else batch_size))
        yield slice(start, stop)
        start = stop


def tie_samples(ref_spikes: list[np.ndarray], got_spikes: list[np.ndarray]) -> np.ndarray:
    """Per sample (spikes ``[T, B, ...]``): True when its spikes first differ, in the order
    they are computed (timestep, then layer), in one single neuron. That is what float
    rounding does at a threshold tie (summation order, BatchNorm folded into the weights):
    the membrane is within a rounding error of the threshold and one spike flips, then the
    flip propagates. A wrong export differs in many neurons at once."""
    if not ref_spikes:
        return np.zeros(0, dtype=bool)
    steps, batch = ref_spikes[0].shape[:2]
    counts = np.stack([(r != g).reshape(steps, batch, -1).sum(-1)
                       for r, g in zip(ref_spikes, got_spikes, strict=True)], axis=1)
    ordered = counts.reshape(steps * len(ref_spikes), batch)          # (t, layer) order
    first = np.argmax(ordered > 0, axis=0)
    return (ordered.max(0) > 0) & (ordered[first, np.arange(batch)] == 1)


def compare(reference: RunFn, candidate: RunFn, inputs: torch.Tensor, batch_size: int,
            spike_names: list[str] | None = None, batch_axis: int = 0) -> Agreement:
    """Run both on the same chunks; spikes are compared position by position. Samples that
    diverge from a threshold tie (:func:`tie_samples`) are counted apart and left out of
    the other figures."""
    if batch_size < 1:
        raise NeuroKDError(f"batch size for the check must be >= 1, not {batch_size}")
    tally = _Tally()
    count = inputs.shape[batch_axis]
    for part in chunks(count, batch_size):
        x = take(inputs, part, batch_axis)
        ref_logits, ref_spikes = reference(x)
        got_logits, got_spikes = candidate(x)
        if got_logits.shape != ref_logits.shape or len(got_spikes) != len(ref_spikes):
            raise NeuroKDError(f"export gives logits {tuple(got_logits.shape)} and "
                               f"{len(got_spikes)} spike outputs, the model "
                               f"{tuple(ref_logits.shape)} and {len(ref_spikes)}")
        tally.add(ref_logits, got_logits, ref_spikes, got_spikes, spike_names,
                  x.shape[batch_axis])
    return tally.agreement(count)


@dataclass
class _Tally:
    sizes: set = field(default_factory=set)
    err: float = 0.0
    scale: float = 0.0
    bad: int = 0
    seen: int = 0
    fired: float = 0.0
    agree: int = 0
    ties: int = 0
    first: str = ""

    def add(self, ref_logits, got_logits, ref_spikes, got_spikes, spike_names, size) -> None:
        self.sizes.add(size)
        student = ref_logits.ndim == 3          # [T, B, K]: predict from the mean over T
        tied = tie_samples(ref_spikes, got_spikes) if student else np.zeros(size, dtype=bool)
        keep = ~tied
        self.ties += int(tied.sum())
        ref_kept = ref_logits[:, keep] if student else ref_logits
        got_kept = got_logits[:, keep] if student else got_logits
        if ref_kept.size:
            self.err = max(self.err, float(np.abs(got_kept - ref_kept).max()))
        self.scale = max(self.scale, float(np.abs(ref_logits).max()))
        ref_pred = (ref_kept.mean(0) if student else ref_kept).argmax(-1)
        got_pred = (got_kept.mean(0) if student else got_kept).argmax(-1)
        self.agree += int((ref_pred == got_pred).sum())
        for k, (ref, got) in enumerate(zip(ref_spikes, got_spikes, strict=True)):
            ref, got = ref[:, keep], got[:, keep]
            differ = ref != got
            self.seen += ref.size
            self.fired += float(ref.sum())
            if differ.any() and not self.first:
                t = int(np.argwhere(differ)[0][0])
                name = spike_names[k] if spike_names else f"neuron layer {k}"
                self.first = f"{name}, timestep {t}"
            self.bad += int(differ.sum())

    def agreement(self, count: int) -> Agreement:
        checked = max(1, count - self.ties)
        return Agreement(count, tuple(sorted(self.sizes)), self.err, self.scale, self.bad,
                         self.seen, self.agree / checked, self.fired / max(1, self.seen),
                         self.first, self.ties)
