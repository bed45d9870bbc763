"""Which samples a command runs a student on: one policy for export checks, calibration,
simulation and energy counts.

- A data set named on the command line, else the one the student was trained on (recorded in
  its checkpoint or export): that data set's split. If it cannot be loaded (a CIFAR folder
  that is not on this machine) that is an error naming the folder, never a silent switch to
  other inputs.
- No data set at all (a ``--model`` source): seeded N(0, 1) inputs, but only when the caller
  asks for them (``--random-inputs``); else an error saying how to choose.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Subset

from .errors import DataError


@dataclass(frozen=True)
class DataRef:
    """Where a data set's samples live and how its splits are made (as the run made them)."""

    dataset: str
    data_dir: str | None = None
    image_size: int = 32
    val_fraction: float = 0.1

    @classmethod
    def of(cls, config: dict | None, dataset: str | None = None,
           data_dir: str | None = None) -> DataRef | None:
        """The data set ``dataset`` (default: the run's), with the run's folder and split
        settings when it is the run's own; None when neither names one."""
        config = config or {}
        name = dataset or config.get("dataset")
        if not name:
            return None
        own = name == config.get("dataset")
        return cls(name, data_dir or (config.get("data_dir") if own else None),
                   int(config.get("image_size", 32)) if own else 32,
                   float(config.get("val_fraction", 0.1)) if own else 0.1)

    def load(self, input_shape: tuple[int, ...], split: str):
        from .data import load_data

        bundle = load_data(self.dataset, data_dir=self.data_dir, val_fraction=self.val_fraction,
                           augment=False, image_size=self.image_size)
        if tuple(bundle.input_shape) != tuple(input_shape):
            raise DataError(f"{self.dataset} samples have shape {tuple(bundle.input_shape)}, "
                            f"the model takes {tuple(input_shape)}")
        return getattr(bundle, split)


def dataset_split(dataset: str, split: str, count: int | None, input_shape: tuple[int, ...],
                  data_dir: str | None = None, image_size: int = 32,
                  val_fraction: float = 0.1) -> tuple[torch.Tensor, np.ndarray, str]:
    """The first ``count`` (None: all) samples of ``dataset``'s ``split`` as one tensor, their
    labels and a description."""
    samples = DataRef(dataset, data_dir, image_size, val_fraction).load(input_shape, split)
    return _stacked(samples, count, f"{dataset} {split} split")


def _stacked(samples, count: int | None, label: str) -> tuple[torch.Tensor, np.ndarray, str]:
    count = len(samples) if count is None else min(count, len(samples))
    x = torch.stack([samples[i][0] for i in range(count)]).float()
    labels = np.array([int(samples[i][1]) for i in range(count)], dtype=np.int64)
    return x, labels, f"{label} ({count} samples)"


def random_inputs(input_shape: tuple[int, ...], count: int,
                  seed: int = 0) -> tuple[torch.Tensor, None, str]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(count, *input_shape, generator=generator)
    return x, None, f"{count} random N(0,1) inputs (seed {seed})"


def _no_data(label: str) -> DataError:
    return DataError(f"{label} names no data set to run on: give --dataset NAME (with "
                     "--data-dir if it needs one), or --random-inputs for seeded N(0,1) inputs")


def source_inputs(source, split: str = "test", count: int | None = 512,
                  dataset: str | None = None, data_dir: str | None = None,
                  random: bool = False, random_count: int = 64,
                  seed: int = 0) -> tuple[torch.Tensor, np.ndarray | None, str]:
    """Inputs (and labels, None for random inputs) for ``source`` (a ``StudentSource``) by the
    policy of the module docstring, as one tensor of at most ``count`` samples."""
    ref = None if random else DataRef.of(source.config, dataset, data_dir)
    if ref is not None:
        return _stacked(ref.load(source.input_shape, split), count, f"{ref.dataset} {split} split")
    if not random:
        raise _no_data(source.label)
    return random_inputs(source.input_shape, min(count or random_count, random_count), seed)


def source_batches(source, split: str = "test", count: int | None = None,
                   batch_size: int = 256, dataset: str | None = None,
                   data_dir: str | None = None, random: bool = False, random_count: int = 256,
                   seed: int = 0) -> tuple[Iterable, int, str]:
    """The same policy, streamed: ``(batches, sample count, description)``, so a large test
    split is never held in memory at once."""
    from .data import make_loader

    ref = None if random else DataRef.of(source.config, dataset, data_dir)
    if ref is None:
        if not random:
            raise _no_data(source.label)
        x, _, label = random_inputs(source.input_shape, count or random_count, seed)
        return x.split(batch_size), len(x), label
    samples = ref.load(source.input_shape, split)
    total = min(len(samples), count or len(samples))
    chosen = samples if total == len(samples) else Subset(samples, range(total))
    return make_loader(chosen, batch_size), total, f"{ref.dataset} {split} split ({total} samples)"
