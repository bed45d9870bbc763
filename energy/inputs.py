"""What a student is counted on: a data set's test split, else seeded random inputs."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.utils.data import Subset

from neurokd.data import load_data, make_loader
from neurokd.errors import DataError
from neurokd.sources import StudentSource

RANDOM_SAMPLES = 256


def student_inputs(source: StudentSource, dataset: str | None = None, data_dir: str | None = None,
                   samples: int | None = None, batch_size: int = 256,
                   seed: int = 0) -> tuple[Iterable, int, str]:
    """``(batches, sample count, description)``: ``dataset`` (default: the run's own) or, for
    a ``--model`` source without ``dataset``, ``samples`` (default 256) seeded N(0, 1) inputs."""
    config = source.config or {}
    name = dataset or config.get("dataset")
    if not name:
        count = samples or RANDOM_SAMPLES
        generator = torch.Generator().manual_seed(seed)
        x = torch.randn(count, *source.input_shape, generator=generator)
        return x.split(batch_size), count, f"{count} random N(0,1) inputs (seed {seed})"
    bundle = load_data(name, data_dir=data_dir or config.get("data_dir"),
                       val_fraction=config.get("val_fraction", 0.1), augment=False,
                       image_size=config.get("image_size", 32))
    if tuple(bundle.input_shape) != tuple(source.input_shape):
        raise DataError(f"{name} samples have shape {tuple(bundle.input_shape)}, the model takes "
                        f"{tuple(source.input_shape)}")
    count = min(len(bundle.test), samples or len(bundle.test))
    test = bundle.test if count == len(bundle.test) else Subset(bundle.test, range(count))
    return make_loader(test, batch_size), count, f"{name} test split ({count} samples)"
