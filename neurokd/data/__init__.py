"""Data sets by name, each with fixed train / validation / test splits (docs/data.md).

``DATASETS`` maps a name to a :class:`DatasetSpec`: how to load it, whether it needs
``--data-dir`` and a one-line summary. RunConfig's ``--dataset`` choices, the data-dir check
and the docs table come from it: a new data set is one module plus one line here. Nothing is
downloaded: digits ships with scikit-learn, mnist1d is generated locally, CIFAR and
ImageFolder are read from a folder the user gives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import DataError
from .embedded import load_digits, load_mnist1d
from .images import load_cifar, load_imagefolder
from .splits import SPLIT_SEED, DataBundle, Indexed, make_loader, stratified_split


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    load: Callable[..., DataBundle]   # load(name=, data_dir=, val_fraction=, augment=, ...)
    needs_data_dir: bool
    summary: str


DATASETS: dict[str, DatasetSpec] = {d.name: d for d in (
    DatasetSpec("digits", load_digits, False,
                "scikit-learn's 8x8 digits (ships with scikit-learn), 1 x 8 x 8 in [0, 1]"),
    DatasetSpec("mnist1d", load_mnist1d, False,
                "mnist1d generated locally from its fixed seed, 1 x 1 x 40"),
    DatasetSpec("cifar10", load_cifar, True,
                "CIFAR-10 python-pickle batches from --data-dir, 3 x 32 x 32"),
    DatasetSpec("cifar100", load_cifar, True,
                "CIFAR-100 python-pickle batches from --data-dir, 3 x 32 x 32"),
    DatasetSpec("imagefolder", load_imagefolder, True,
                "class folders of images from --data-dir, 3 x S x S (--image-size)"),
)}


def load_data(name: str, data_dir: str | None = None, val_fraction: float = 0.1,
              augment: bool | None = None, image_size: int = 32, **options) -> DataBundle:
    """The three splits of data set ``name``; ``options`` go to that data set's loader."""
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}")
    return DATASETS[name].load(name=name, data_dir=data_dir, val_fraction=val_fraction,
                               augment=augment, image_size=image_size, **options)


__all__ = ["DATASETS", "DatasetSpec", "DataBundle", "Indexed", "SPLIT_SEED", "load_data",
           "make_loader", "stratified_split"]
