"""What every exporter needs to prove an export right: a private copy, a reference run, a comparison.

An export is compared with the PyTorch model it came from (eager spikingjelly, the
independent computation) on inputs chosen by ``neurokd.inputs.source_inputs`` (the run's test
split; random inputs only when asked for). ``compare`` walks the inputs in chunks, so the
batch axis of the exported model is exercised at several sizes (1, ``batch_size`` and the
remainder).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass

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

    def check(self, target: str, tolerance: float, spikes_exact: bool = True) -> None:
        """Raise unless argmax agrees everywhere, logits within ``tolerance`` (scaled by
        max(1, |logit|)), and, with ``spikes_exact``, every spike identical."""
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
        if problems:
            raise NeuroKDError(f"{target} export does not reproduce the PyTorch model on "
                               f"{self.samples} samples: {'; '.join(problems)}; nothing written")


def chunks(count: int, batch_size: int) -> Iterator[slice]:
    """One sample first (the smallest batch), then ``batch_size`` at a time."""
    start = 0
    while start < count:
        stop = min(count, start + (1 if start == 0 else batch_size))
        yield slice(start, stop)
        start = stop


def compare(reference: RunFn, candidate: RunFn, inputs: torch.Tensor, batch_size: int,
            spike_names: list[str] | None = None) -> Agreement:
    """Run both on the same chunks; spikes are compared position by position."""
    if batch_size < 1:
        raise NeuroKDError(f"batch size for the check must be >= 1, not {batch_size}")
    sizes, err, scale, bad, seen, fired, agree, first = [], 0.0, 0.0, 0, 0, 0.0, 0, ""
    for part in chunks(len(inputs), batch_size):
        x = inputs[part]
        ref_logits, ref_spikes = reference(x)
        got_logits, got_spikes = candidate(x)
        if got_logits.shape != ref_logits.shape or len(got_spikes) != len(ref_spikes):
            raise NeuroKDError(f"export gives logits {tuple(got_logits.shape)} and "
                               f"{len(got_spikes)} spike outputs, the model "
                               f"{tuple(ref_logits.shape)} and {len(ref_spikes)}")
        sizes.append(len(x))
        err = max(err, float(np.abs(got_logits - ref_logits).max()))
        scale = max(scale, float(np.abs(ref_logits).max()))
        axis = 0 if ref_logits.ndim == 3 else None  # students: predict from the mean over T
        ref_pred = (ref_logits.mean(axis) if axis == 0 else ref_logits).argmax(-1)
        got_pred = (got_logits.mean(axis) if axis == 0 else got_logits).argmax(-1)
        agree += int((ref_pred == got_pred).sum())
        for k, (ref, got) in enumerate(zip(ref_spikes, got_spikes, strict=True)):
            differ = ref != got
            seen += ref.size
            fired += float(ref.sum())
            if differ.any() and not first:
                t = int(np.argwhere(differ)[0][0])
                name = spike_names[k] if spike_names else f"neuron layer {k}"
                first = f"{name}, timestep {t}"
            bad += int(differ.sum())
    return Agreement(len(inputs), tuple(sorted(set(sizes))), err, scale, bad, seen,
                     agree / max(1, len(inputs)), fired / max(1, seen), first)
