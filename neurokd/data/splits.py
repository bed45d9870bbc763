"""Splits and bundles shared by every data set: fixed seeds, stratified by class."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ..errors import DataError

SPLIT_SEED = 0  # validation and test splits never depend on the run's --seed


@dataclass
class DataBundle:
    """The three splits of one data set and what a model needs to know about it."""

    name: str
    train: Dataset
    val: Dataset
    test: Dataset
    input_shape: tuple[int, ...]
    num_classes: int
    class_names: list[str]
    augmented: bool  # the train split applies random transforms


class Indexed(Dataset):
    """Yields ``(x, y, index)`` so per-sample teacher logits can be cached by index."""

    def __init__(self, base: Dataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        x, y = self.base[i]
        return x, y, i


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False, world=None) -> DataLoader:
    """Shuffled loaders draw their order from a seeded generator (or, under torchrun, from a
    DistributedSampler seeded the same way and re-seeded per epoch)."""
    if world is not None and world.active and shuffle:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(dataset, world.size, world.rank, shuffle=True, seed=seed)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                          num_workers=0)
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      drop_last=drop_last, num_workers=0)


def stratified_split(labels: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    try:
        keep, held = train_test_split(index, test_size=fraction, stratify=labels,
                                      random_state=SPLIT_SEED)
    except ValueError as exc:  # too few samples of a class to put one on each side
        raise DataError(f"cannot split {len(labels)} samples stratified by class: {exc}") from None
    return np.sort(keep), np.sort(held)


def tensor_bundle(name, x_train, y_train, x_test, y_test, val_fraction, class_names):
    x_train = torch.as_tensor(x_train, dtype=torch.float32)
    x_test = torch.as_tensor(x_test, dtype=torch.float32)
    y_train = torch.as_tensor(y_train, dtype=torch.long)
    y_test = torch.as_tensor(y_test, dtype=torch.long)
    keep, held = stratified_split(y_train.numpy(), val_fraction)
    return DataBundle(
        name=name,
        train=TensorDataset(x_train[keep], y_train[keep]),
        val=TensorDataset(x_train[held], y_train[held]),
        test=TensorDataset(x_test, y_test),
        input_shape=tuple(x_train.shape[1:]),
        num_classes=len(class_names),
        class_names=class_names,
        augmented=False,
    )
