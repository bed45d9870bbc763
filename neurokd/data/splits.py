"""Splits and bundles shared by every data set: fixed seeds, stratified by class.

Samples with a time axis (event frames, rate-coded spikes) are ``[T, C, H, W]`` per item and
are batched time-major, ``[T, B, C, H, W]``, by :class:`TimeMajorBatches`: every loader made by
:func:`make_loader` and every stack made by :func:`stack_samples` uses it, so no consumer
guesses the layout. A data set says it has a time axis with ``time_major = True`` (wrappers
such as ``Subset`` and ``Indexed`` are looked through).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset
from torch.utils.data.dataloader import default_collate

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
    # Values that mean intensity 0 and 1, per channel (what rate encoding normalises with);
    # None: the samples are not intensities (event frames).
    intensity: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    time_major: bool = False  # items are [T, C, H, W], batches [T, B, C, H, W]
    # A random transform of whole training batches [B, ...] (mnist1d's --augment); training
    # loaders apply it (make_loader's ``transform``). Image sets transform per sample instead.
    train_transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    # The student's stratified share of ``train`` (--train-fraction); None: all of it.
    student_train: Dataset | None = None

    def with_student_share(self, fraction: float, seed: int) -> DataBundle:
        """The bundle with the student's share of the training split drawn (checked now, before
        any training, so a share too small to hold every class fails at once)."""
        share = None if fraction >= 1 else stratified_subset(self.train, fraction, seed)
        return dataclasses.replace(self, student_train=share)

    def for_student(self) -> DataBundle:
        """The bundle as the student trains on it: ``train`` is the student's share."""
        if self.student_train is None:
            return self
        return dataclasses.replace(self, train=self.student_train, student_train=None)


class Indexed(Dataset):
    """Yields ``(x, y, index)`` so per-sample teacher logits can be cached by index."""

    def __init__(self, base: Dataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        x, y = self.base[i]
        return x, y, i


class TransformInputs:
    """A collate function: the default batching, then ``transform`` on the batch's inputs (the
    first element; labels and indices pass unchanged)."""

    def __init__(self, transform: Callable[[torch.Tensor], torch.Tensor]):
        self.transform = transform

    def __call__(self, items: list) -> list:
        inputs, *rest = default_collate(items)
        return [self.transform(inputs), *rest]


def is_time_major(dataset: Dataset) -> bool:
    """True when the items of ``dataset`` (or of the data set it wraps) are ``[T, ...]``."""
    for _ in range(16):  # Subset / Indexed / shard wrappers, never a cycle
        if dataset is None:
            return False
        if getattr(dataset, "time_major", False):
            return True
        inner = getattr(dataset, "dataset", None)  # not `or`: an empty data set is falsy
        dataset = inner if inner is not None else getattr(dataset, "base", None)
    return False


class TimeMajorBatches:
    """A collate function for items ``[T, ...]``: batches ``[T, B, ...]`` (after ``inner``,
    the default batching or :class:`TransformInputs`)."""

    def __init__(self, inner=None):
        self.inner = inner or default_collate

    def __call__(self, items: list) -> list:
        inputs, *rest = self.inner(items)
        return [inputs.transpose(0, 1).contiguous(), *rest]


def stack_samples(dataset: Dataset, count: int) -> tuple[torch.Tensor, np.ndarray]:
    """The first ``count`` samples as one batch (``[N, ...]`` or ``[T, N, ...]``) and labels."""
    collate = TimeMajorBatches() if is_time_major(dataset) else default_collate
    inputs, labels, *_ = collate([dataset[i] for i in range(count)])
    return inputs.float(), labels.numpy().astype(np.int64)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool = False, seed: int = 0,
                drop_last: bool = False, world=None,
                transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> DataLoader:
    """Shuffled loaders draw their order from a seeded generator (or, under torchrun, from a
    DistributedSampler seeded the same way and re-seeded per epoch). ``transform`` is applied
    to every batch's inputs (a bundle's ``train_transform``)."""
    collate = TransformInputs(transform) if transform is not None else None
    if is_time_major(dataset):
        collate = TimeMajorBatches(collate)
    if world is not None and world.active and shuffle:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(dataset, world.size, world.rank, shuffle=True, seed=seed)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                          num_workers=0, collate_fn=collate)
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      drop_last=drop_last, num_workers=0, collate_fn=collate)


def dataset_labels(dataset: Dataset) -> np.ndarray:
    """The class label of every sample, read without loading the samples where possible."""
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[1].numpy()
    if isinstance(dataset, Subset):
        return dataset_labels(dataset.dataset)[np.asarray(dataset.indices, dtype=np.int64)]
    if hasattr(dataset, "targets"):
        return np.asarray(dataset.targets)
    return np.array([int(dataset[i][1]) for i in range(len(dataset))])


def stratified_subset(dataset: Dataset, fraction: float, seed: int) -> Subset:
    """A stratified share ``fraction`` of ``dataset``, drawn with ``seed``."""
    from sklearn.model_selection import train_test_split

    labels = dataset_labels(dataset)
    try:
        keep, _ = train_test_split(np.arange(len(labels)), train_size=fraction, stratify=labels,
                                   random_state=seed % 2**32)
    except ValueError as exc:  # fewer samples in the share than classes, or a class of one
        raise DataError(f"train_fraction {fraction}: cannot draw a stratified share of "
                        f"{len(labels)} training samples: {exc}") from None
    return Subset(dataset, np.sort(keep).tolist())


def stratified_split(labels: np.ndarray, fraction: float,
                     what: str = "held-out") -> tuple[np.ndarray, np.ndarray]:
    """Indices kept and held out (``fraction`` of them, every class on both sides)."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    classes = len(np.unique(labels))
    # scikit-learn's own count for a fractional test_size: the ceiling.
    held = math.ceil(fraction * len(labels)) if fraction < 1 else int(fraction)
    if held < classes or len(labels) - held < classes:
        remedy = ("raise --val-fraction or give more samples per class" if what == "validation"
                  else "give more samples per class, or put the images in train/ and test/ "
                  "folders (without them 20% are held out as the test split, docs/data.md)")
        raise DataError(
            f"cannot hold out a {what} split of {fraction:g} x {len(labels)} samples with "
            f"every one of the {classes} classes on both sides ({held} held out): {remedy}")
    try:
        keep, held_out = train_test_split(index, test_size=fraction, stratify=labels,
                                          random_state=SPLIT_SEED)
    except ValueError as exc:  # a class with a single sample cannot be on both sides
        raise DataError(f"cannot split {len(labels)} samples stratified by class for the "
                        f"{what} split: {exc}") from None
    return np.sort(keep), np.sort(held_out)


def tensor_bundle(name, x_train, y_train, x_test, y_test, val_fraction, class_names,
                  intensity=None):
    x_train = torch.as_tensor(x_train, dtype=torch.float32)
    x_test = torch.as_tensor(x_test, dtype=torch.float32)
    y_train = torch.as_tensor(y_train, dtype=torch.long)
    y_test = torch.as_tensor(y_test, dtype=torch.long)
    keep, held = stratified_split(y_train.numpy(), val_fraction, "validation")
    return DataBundle(
        name=name,
        train=TensorDataset(x_train[keep], y_train[keep]),
        val=TensorDataset(x_train[held], y_train[held]),
        test=TensorDataset(x_test, y_test),
        input_shape=tuple(x_train.shape[1:]),
        num_classes=len(class_names),
        class_names=class_names,
        augmented=False,
        intensity=intensity,
    )
