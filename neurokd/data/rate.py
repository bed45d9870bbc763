"""Rate encoding of a static data set: every split's samples as seeded Bernoulli spike trains.

Sample ``i`` of split ``s`` in a run seeded ``seed`` becomes ``[T, C, H, W]`` 0/1 spikes, each 1
with probability equal to its intensity normalised to [0, 1] (``neurokd.data.encoding.rate_spikes``),
drawn from a generator seeded by ``(seed, s, i)``. So the spike trains are a deterministic
transform of the data: the test split's spikes are the same in every evaluation, export check,
simulation and energy count, and the teacher (which sees their time average) can be cached per
sample.
"""

from __future__ import annotations

import dataclasses

import torch
from torch.utils.data import Dataset, TensorDataset

from ..errors import DataError
from .encoding import rate_spikes, sample_seed
from .splits import DataBundle, dataset_labels


class RateEncoded(Dataset):
    """``(spikes [T, C, H, W], label)`` for each ``(x, label)`` of ``base``."""

    time_major = True

    def __init__(self, base: Dataset, split: str, timesteps: int, seed: int,
                 low: torch.Tensor, high: torch.Tensor):
        self.base, self.split, self.timesteps, self.seed = base, split, timesteps, seed
        self.low, self.span = low, (high - low)

    def __len__(self) -> int:
        return len(self.base)

    @property
    def targets(self):
        return dataset_labels(self.base)

    def __getitem__(self, index: int):
        x, label = self.base[index][:2]
        intensity = ((torch.as_tensor(x, dtype=torch.float32) - self.low) / self.span).clamp(0, 1)
        return rate_spikes(intensity, self.timesteps,
                           sample_seed(self.seed, self.split, index)), label


def _range(bundle: DataBundle) -> tuple[torch.Tensor, torch.Tensor]:
    """The values of intensity 0 and 1 per channel, shaped to broadcast over a sample."""
    if bundle.intensity is not None:
        low, high = bundle.intensity
    elif isinstance(bundle.train, TensorDataset):  # a signal: its training range
        values = bundle.train.tensors[0]
        low, high = (float(values.min()),), (float(values.max()),)
    else:
        raise DataError(f"{bundle.name}: no intensity range to rate-encode with")
    trailing = (1,) * (len(bundle.input_shape) - 1)
    low_t = torch.tensor(low, dtype=torch.float32).reshape(-1, *trailing)
    high_t = torch.tensor(high, dtype=torch.float32).reshape(-1, *trailing)
    if bool((high_t <= low_t).any()):
        raise DataError(f"{bundle.name}: empty intensity range {low}..{high}")
    return low_t, high_t


RATE_AUGMENT = ("{name}: --augment transforms whole batches, which rate-coded spike trains are "
                "not; drop --augment or --encoding rate")


def rate_encoded(bundle: DataBundle, timesteps: int, seed: int) -> DataBundle:
    """``bundle`` with every split rate-encoded over ``timesteps`` steps."""
    if bundle.time_major:
        raise DataError(f"{bundle.name} is already spikes; drop --encoding")
    if getattr(bundle, "train_transform", None) is not None:
        raise DataError(RATE_AUGMENT.format(name=bundle.name))
    low, high = _range(bundle)

    def encode(dataset: Dataset, split: str) -> RateEncoded:
        return RateEncoded(dataset, split, timesteps, seed, low, high)

    return dataclasses.replace(bundle, train=encode(bundle.train, "train"),
                               val=encode(bundle.val, "val"), test=encode(bundle.test, "test"),
                               time_major=True)
