"""Multi-process training under torchrun: DistributedDataParallel, gloo on CPU, nccl on CUDA.

``torchrun --nproc_per_node N -m neurokd distill ...`` sets RANK / WORLD_SIZE / LOCAL_RANK and the
rendezvous variables; a plain ``neurokd distill`` runs as a world of one and touches none of this.
``--batch-size`` is per process (as in torchvision's reference recipes).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, Subset


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1

    def shard(self, dataset: Dataset) -> Dataset:
        """Every size-th sample for evaluation (no padding, so counts stay exact)."""
        if not self.active:
            return dataset
        return Subset(dataset, list(range(self.rank, len(dataset), self.size)))

    def sum(self, *values: float) -> list[float]:
        """Sums over ranks (identity in a world of one)."""
        if not self.active:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=_collective_device())
        dist.all_reduce(tensor)
        return tensor.tolist()

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        if not self.active:
            return model
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def sync_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm statistics) everywhere: DDP broadcasts them before each
        forward, but every rank then updates its own copy, so they drift after the last step."""
        if self.active:
            for buffer in model.buffers():
                if buffer.is_floating_point() or buffer.dtype == torch.int64:
                    dist.broadcast(buffer.data, src=0)

    def max_parameter_difference(self, model: nn.Module) -> float:
        """Largest difference of any parameter or buffer between this rank and any other."""
        if not self.active:
            return 0.0
        tensors = list(model.parameters()) + list(model.buffers())
        flat = torch.cat([t.detach().flatten().double() for t in tensors])
        flat = flat.to(_collective_device())
        gathered = [torch.empty_like(flat) for _ in range(self.size)]
        dist.all_gather(gathered, flat)
        return max(float((g - flat).abs().max()) for g in gathered)


def _collective_device() -> torch.device:
    return torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")


_joined = False  # this process has been in a torchrun process group


def end_worker(code: int) -> None:
    """Ends a process that was in a torchrun group now, without interpreter finalisation.

    With torch 2.14, once DistributedDataParallel has wrapped a model the gloo group outlives
    destroy_process_group (its worker threads still run after it and gc.collect, even with the
    model and the wrapper deleted), so it is destroyed during interpreter teardown, where it
    sometimes aborts the process with SIGABRT ("terminate called without an active exception")
    after all work is done: 4 in 60 two-process launches before this existed, 0 in 160 with it
    (benchmarks/results/ddp_exit.md). Everything is written and flushed by the time this runs,
    so such a process exits directly with its code. Does nothing in a world of one.
    """
    if _joined:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


@contextlib.contextmanager
def world(device_name: str) -> Iterator[World]:
    """Joins the torchrun process group when launched by torchrun, else a world of one."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        yield World()
        return
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    global _joined
    _joined = True
    try:
        yield World(rank, size, local_rank)
    finally:
        dist.destroy_process_group()
