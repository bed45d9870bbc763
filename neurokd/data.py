"""Data sets by name, each with fixed train / validation / test splits.

Nothing is downloaded: digits ships with scikit-learn, mnist1d is generated locally, CIFAR and
ImageFolder are read from a folder the user gives.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from .errors import DataError

SPLIT_SEED = 0  # validation and test splits never depend on the run's --seed
CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
CIFAR_MEAN_STD = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}


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


def load_data(name: str, data_dir: str | None = None, val_fraction: float = 0.1,
              augment: bool | None = None, image_size: int = 32) -> DataBundle:
    loaders = {"digits": _digits, "mnist1d": _mnist1d, "cifar10": _cifar, "cifar100": _cifar,
               "imagefolder": _imagefolder}
    if name not in loaders:
        raise DataError(f"unknown data set {name!r}; choose from {', '.join(loaders)}")
    return loaders[name](name=name, data_dir=data_dir, val_fraction=val_fraction,
                         augment=augment, image_size=image_size)


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


def _stratified_split(labels: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    try:
        keep, held = train_test_split(index, test_size=fraction, stratify=labels,
                                      random_state=SPLIT_SEED)
    except ValueError as exc:  # too few samples of a class to put one on each side
        raise DataError(f"cannot split {len(labels)} samples stratified by class: {exc}") from None
    return np.sort(keep), np.sort(held)


def _tensor_bundle(name, x_train, y_train, x_test, y_test, val_fraction, class_names):
    x_train = torch.as_tensor(x_train, dtype=torch.float32)
    x_test = torch.as_tensor(x_test, dtype=torch.float32)
    y_train = torch.as_tensor(y_train, dtype=torch.long)
    y_test = torch.as_tensor(y_test, dtype=torch.long)
    keep, held = _stratified_split(y_train.numpy(), val_fraction)
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


def _digits(name, val_fraction, augment, **_):
    from sklearn.datasets import load_digits

    if augment:
        raise DataError("digits has no augmentation; drop --augment")
    digits = load_digits()
    x = (digits.data / 16.0).reshape(-1, 1, 8, 8)
    train, test = _stratified_split(digits.target, 0.2)
    return _tensor_bundle(name, x[train], digits.target[train], x[test], digits.target[test],
                          val_fraction, [str(c) for c in range(10)])


@functools.lru_cache(maxsize=1)
def _mnist1d_arrays() -> tuple[np.ndarray, ...]:
    """mnist1d from its fixed seed (seconds to generate, the same every time: kept)."""
    from mnist1d.data import get_dataset_args, make_dataset

    data = make_dataset(get_dataset_args())
    # Kept 2-D (1 x 1 x 40) so one set of conv / export code serves every data set.
    return (np.asarray(data["x"]).reshape(-1, 1, 1, 40), np.asarray(data["y"]),
            np.asarray(data["x_test"]).reshape(-1, 1, 1, 40), np.asarray(data["y_test"]))


def _mnist1d(name, val_fraction, augment, **_):
    if augment:
        raise DataError("mnist1d has no augmentation; drop --augment")
    x_train, y_train, x_test, y_test = (a.copy() for a in _mnist1d_arrays())  # callers own theirs
    return _tensor_bundle(name, x_train, y_train, x_test, y_test, val_fraction,
                          [str(c) for c in range(10)])


def _image_transforms(mean, std, image_size: int | None, augment: bool):
    from torchvision import transforms as tv

    resize = [tv.Resize((image_size, image_size))] if image_size else []
    tail = [tv.ToTensor(), tv.Normalize(mean, std)]
    plain = tv.Compose(resize + tail)
    if not augment:
        return plain, plain
    side = image_size or 32
    train = tv.Compose(resize + [tv.RandomCrop(side, padding=4), tv.RandomHorizontalFlip()] + tail)
    return train, plain


def _cifar(name, data_dir, val_fraction, augment, **_):
    from .cifar import CifarPickle

    folder = CIFAR_FOLDERS[name]
    root = Path(data_dir).expanduser()
    expected = root if root.name == folder else root / folder
    if not expected.is_dir():
        raise DataError(
            f"{name}: no folder {expected} (expected the python-pickle batches of the "
            f"official {folder.replace('-python', '')}-python.tar.gz unpacked there, e.g. "
            f"{expected}/data_batch_1 or {expected}/train; nothing is downloaded)")
    augment = True if augment is None else augment
    train_tf, eval_tf = _image_transforms(*CIFAR_MEAN_STD[name], None, augment)
    train_aug = CifarPickle(expected, name, train=True, transform=train_tf)
    train_plain = train_aug.with_transform(eval_tf)
    test = CifarPickle(expected, name, train=False, transform=eval_tf)
    keep, held = _stratified_split(np.asarray(train_aug.targets), val_fraction)
    return DataBundle(name=name, train=Subset(train_aug, keep.tolist()),
                      val=Subset(train_plain, held.tolist()), test=test,
                      input_shape=(3, 32, 32), num_classes=len(train_aug.classes),
                      class_names=list(train_aug.classes), augmented=augment)


def _image_folder(path: Path, transform):
    from torchvision import datasets

    try:
        return datasets.ImageFolder(str(path), transform=transform)
    except (FileNotFoundError, RuntimeError, OSError) as exc:
        raise DataError(f"imagefolder: cannot read {path}: {exc}") from None


def _imagefolder(name, data_dir, val_fraction, augment, image_size, **_):
    root = Path(data_dir).expanduser()
    layout = ("expected a folder of class sub-folders holding images "
              "(root/<class>/*.png), or root/train/<class>/ and root/test/<class>/")
    if not root.is_dir():
        raise DataError(f"imagefolder: no folder {root} ({layout})")
    augment = False if augment is None else augment
    train_tf, eval_tf = _image_transforms((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), image_size, augment)
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    if (root / "train").is_dir() and test_dir is not None:
        train_aug = _image_folder(root / "train", train_tf)
        train_plain = _image_folder(root / "train", eval_tf)
        test = _image_folder(test_dir, eval_tf)
        if test.classes != train_aug.classes:
            raise DataError(f"imagefolder: {test_dir} has other classes than {root / 'train'}")
        trainval_index = np.arange(len(train_aug))
    else:
        if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in root.rglob("*")):
            raise DataError(f"imagefolder: no images under {root} ({layout})")
        train_aug = _image_folder(root, train_tf)
        train_plain = _image_folder(root, eval_tf)
        trainval_index, test_index = _stratified_split(np.asarray(train_aug.targets), 0.2)
        test = Subset(train_plain, test_index.tolist())
    targets = np.asarray(train_aug.targets)[trainval_index]
    keep, held = _stratified_split(targets, val_fraction)
    return DataBundle(name=name, train=Subset(train_aug, trainval_index[keep].tolist()),
                      val=Subset(train_plain, trainval_index[held].tolist()), test=test,
                      input_shape=(3, image_size, image_size),
                      num_classes=len(train_aug.classes), class_names=list(train_aug.classes),
                      augmented=augment)
