"""How many torch threads a job gets: chosen for the work, not torch's default of every core.

Measured here (issue 17): a 2+2-epoch digits run took 32.9 s with torch's default two threads
while another job ran, 7.5 s with one. A small student's convolutions are too short to split
across threads, and under load each extra thread waits for the others. So: ``--threads N``
wins; then ``OMP_NUM_THREADS`` (torch reads it at start-up); else one thread for a model whose
dense work per sample is small, and every core this process may use for a large one (a
ResNet-19 on CIFAR). Under torchrun the cores are shared among the processes on the machine.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

# Dense multiply-accumulates per sample (all timesteps) above which intra-op threads pay off:
# the demo student does ~0.5 M, a CIFAR ResNet-19 ~9 G. Chosen from benchmarks/threads.py.
LARGE_WORK_MACS = 50_000_000


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    reason: str


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def dense_macs(model: nn.Module, sample: torch.Tensor) -> int:
    """Multiply-accumulates of every conv/linear on one sample ``[1, ...]``, all timesteps."""
    from spikingjelly.activation_based import functional

    total = 0

    def count(module, _inputs, output) -> None:
        nonlocal total
        fan_in = module.weight[0].numel()
        total += fan_in * output.numel()

    handles = [m.register_forward_hook(count) for m in model.modules()
               if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear)]
    try:
        with torch.no_grad():
            functional.reset_net(model)
            model(sample)
            functional.reset_net(model)
    finally:
        for handle in handles:
            handle.remove()
    return total


def choose_threads(requested: int | None, work_macs: int | None, processes: int = 1,
                   environ: dict[str, str] | None = None) -> ThreadChoice:
    environ = os.environ if environ is None else environ
    if requested is not None:
        return ThreadChoice(requested, "--threads")
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if environ.get(variable):
            return ThreadChoice(torch.get_num_threads(), f"{variable}={environ[variable]}")
    cores = max(1, usable_cores() // max(1, processes))
    if work_macs is not None and work_macs < LARGE_WORK_MACS:
        return ThreadChoice(1, f"small model: {work_macs / 1e6:.1f} M MACs per sample")
    return ThreadChoice(cores, f"large model: {cores} of {usable_cores()} cores")


@contextlib.contextmanager
def used(choice: ThreadChoice) -> Iterator[ThreadChoice]:
    """``choice`` inside the block; the caller's thread count again after it (a library call
    must not leave the process changed)."""
    before = torch.get_num_threads()
    torch.set_num_threads(choice.threads)
    try:
        yield choice
    finally:
        torch.set_num_threads(before)
