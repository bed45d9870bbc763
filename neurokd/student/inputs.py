"""Which samples a command runs a student on: one policy for export checks, calibration,
simulation and energy counts.

- A data set named on the command line, else the one the student was trained on (recorded in
  its checkpoint or export): that data set's split. If it cannot be loaded (a CIFAR folder
  that is not on this machine) that is an error naming the folder, never a silent switch to
  other inputs.
- No data set at all (a ``--model`` source): seeded N(0, 1) inputs, but only when the caller
  asks for them (``--random-inputs``); else an error saying how to choose.

The samples are what the student was trained on: event frames with the run's T, size and
frame kind, rate-coded spikes with the run's seed (so an export is checked on exactly the
spikes PyTorch saw). Inputs with a time axis come as ``[T, N, ...]``, static ones ``[N, ...]``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Subset

from ..errors import DataError

# Settings of the run's own data set (its folders, sizes and splits) and settings of the
# student's input, which hold for any data set it runs on.
_OWN_SETTINGS = ("data_dir", "image_size", "val_fraction", "event_size", "cache_dir")
_INPUT_SETTINGS = ("timesteps", "encoding", "event_frames", "seed")


@dataclass(frozen=True)
class DataRef:
    """Where a data set's samples live and how its splits and inputs are made (as the run
    made them): ``settings`` are RunConfig fields (``neurokd.data.DATA_OPTIONS``)."""

    dataset: str
    settings: tuple[tuple[str, object], ...] = ()

    @classmethod
    def of(cls, config: dict | None, dataset: str | None = None,
           data_dir: str | None = None) -> DataRef | None:
        """The data set ``dataset`` (default: the run's), with the run's folder and split
        settings when it is the run's own and the run's input settings in any case; None
        when neither names one. ``config``: a run config or an export's recorded metadata."""
        from ..data import DATASETS

        config = config or {}
        name = dataset or config.get("dataset")
        if not name:
            return None
        own = name == config.get("dataset")
        keys = _INPUT_SETTINGS + (_OWN_SETTINGS if own else ())
        settings = {key: config[key] for key in keys if config.get(key) is not None}
        if data_dir:
            settings["data_dir"] = data_dir
        events = name in DATASETS and DATASETS[name].events
        settings.pop("event_frames" if not events else "encoding", None)
        if name in DATASETS:  # an unknown name: load_data says so, listing the choices
            _check_settings(name, settings)
        return cls(name, tuple(sorted(settings.items())))

    def check_shape(self, input_shape: tuple[int, ...]) -> None:
        """DataError when the data set's samples (known without reading it) do not have the
        model's input shape; nothing for a data set whose shape needs its files."""
        from ..data import DATASETS

        if self.dataset in DATASETS:
            _check_shape(self.dataset, DATASETS[self.dataset].sample_shape(
                dict(self.settings)), input_shape)

    def load(self, input_shape: tuple[int, ...], split: str, reporter=None):
        from ..data import load_data

        self.check_shape(input_shape)  # before loading: a data set can take minutes to read
        bundle = load_data(self.dataset, **dict(self.settings), augment=False,
                           reporter=reporter)
        _check_shape(self.dataset, bundle.input_shape, input_shape)
        return getattr(bundle, split)


def _check_shape(dataset: str, samples: tuple[int, ...], model: tuple[int, ...]) -> None:
    if tuple(samples) != tuple(model):
        raise DataError(f"{dataset} samples have shape {tuple(samples)}, the model takes "
                        f"{tuple(model)}")


def _check_settings(name: str, settings: dict) -> None:
    """Settings read from a file (a checkpoint, an export) pass the command line's checks."""
    from ..config import RunConfig

    RunConfig.from_dict({"dataset": name, **settings}, source=f"the recorded {name} settings")


def recorded_settings(config: dict | None) -> dict:
    """What an export records of its data set, so ``simulate`` needs nothing but the file:
    the data set, its folder and split settings and the student's input settings."""
    config = config or {}
    keys = ("dataset",) + _OWN_SETTINGS + _INPUT_SETTINGS
    return {key: config[key] for key in keys if config.get(key) is not None}


def split_inputs(ref: DataRef, split: str, count: int | None, input_shape: tuple[int, ...],
                 reporter=None) -> tuple[torch.Tensor, np.ndarray, str]:
    """The first ``count`` (None: all) samples of ``ref``'s ``split`` as one tensor, their
    labels and a description."""
    samples = ref.load(input_shape, split, reporter)
    return _stacked(samples, count, f"{ref.dataset} {split} split")


def _stacked(samples, count: int | None, label: str) -> tuple[torch.Tensor, np.ndarray, str]:
    from ..data.splits import stack_samples

    count = len(samples) if count is None else min(count, len(samples))
    x, labels = stack_samples(samples, count)
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
    from ..data import make_loader

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
