"""Image data sets read from a folder the user gives: CIFAR-10/100 (the official python-pickle
batches) and ImageFolder trees. Nothing is downloaded."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Subset

from ..errors import DataError
from ..files.budget import check_bytes
from ..files.paths import check_tree, regular_size
from ..text import first_line
from .splits import DataBundle, stratified_split

CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
# the archives https://www.cs.toronto.edu/~kriz/cifar.html distributes (they unpack to the above)
CIFAR_ARCHIVES = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}
CIFAR_MEAN_STD = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
IMAGEFOLDER_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}


def _intensity(mean, std) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The normalised values of pixel intensities 0 and 1, per channel."""
    return (tuple(-m / s for m, s in zip(mean, std, strict=True)),
            tuple((1 - m) / s for m, s in zip(mean, std, strict=True)))


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


def load_cifar(name, data_dir, val_fraction, augment, **_):
    from .cifar_pickle import CifarPickle

    folder = CIFAR_FOLDERS[name]
    root = Path(data_dir).expanduser()
    expected = root if root.name == folder else root / folder
    if not expected.is_dir():
        raise DataError(
            f"{name}: no folder {expected} (expected the python-pickle batches of the "
            f"official {CIFAR_ARCHIVES[name]} unpacked there, e.g. {expected}/"
            f"{'data_batch_1' if name == 'cifar10' else 'train'}; nothing is downloaded)")
    augment = True if augment is None else augment
    train_tf, eval_tf = _image_transforms(*CIFAR_MEAN_STD[name], None, augment)
    train_aug = CifarPickle(expected, name, train=True, transform=train_tf)
    train_plain = train_aug.with_transform(eval_tf)
    test = CifarPickle(expected, name, train=False, transform=eval_tf)
    keep, held = stratified_split(np.asarray(train_aug.targets), val_fraction, "validation")
    return DataBundle(name=name, train=Subset(train_aug, keep.tolist()),
                      val=Subset(train_plain, held.tolist()), test=test,
                      input_shape=(3, 32, 32), num_classes=len(train_aug.classes),
                      class_names=list(train_aug.classes), augmented=augment,
                      intensity=_intensity(*CIFAR_MEAN_STD[name]))


def _image_folder(path: Path, transform, scan: bool = False):
    """torchvision's ImageFolder whose images are opened by :func:`open_image`; ``scan``: read
    every image's header first, so a corrupt file or a decompression bomb fails now, named."""
    from torchvision import datasets

    try:
        found = datasets.ImageFolder(str(path), transform=transform, loader=open_image)
    except (FileNotFoundError, RuntimeError, OSError) as exc:
        raise DataError(f"imagefolder: cannot read {path}: {exc}") from None
    if scan:
        for file, _ in found.samples:
            _checked(file, lambda image: image.verify())  # chunks and CRCs, no decoding
    return found


def open_image(path: str) -> Image.Image:
    """An image file as RGB, decoded in full: a truncated file is a :class:`DataError`."""
    def decode(image):
        image.load()
        return image.convert("RGB")

    return _checked(path, decode)


def _checked(path: str, use):
    """``use(image)`` on the open image at ``path``; PIL's refusals become one DataError: an
    unreadable or truncated file, or one of more pixels than ``Image.MAX_IMAGE_PIXELS``
    (a decompression bomb: a small file that would decode to GBs)."""
    regular_size(path, "imagefolder: image")  # a FIFO named x.png would block Image.open
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                check_bytes(image.width * image.height * 4, f"imagefolder: {path}")
                return use(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"imagefolder: {path}: refused as a decompression bomb ({exc})") \
            from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"imagefolder: {path} is not a readable image "
                        f"({first_line(exc)})") \
            from None


def load_imagefolder(name, data_dir, val_fraction, augment, image_size, **_):
    root = Path(data_dir).expanduser()
    layout = ("expected a folder of class sub-folders holding images "
              "(root/<class>/*.png), or root/train/<class>/ and root/test/<class>/")
    if not root.is_dir():
        raise DataError(f"imagefolder: no folder {root} ({layout})")
    check_tree(root, "imagefolder", IMAGE_SUFFIXES)  # torchvision follows links: no loops, none out
    augment = False if augment is None else augment
    train_tf, eval_tf = _image_transforms(*IMAGEFOLDER_MEAN_STD, image_size, augment)
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    if (root / "train").is_dir() and test_dir is not None:
        train_aug = _image_folder(root / "train", train_tf, scan=True)
        train_plain = _image_folder(root / "train", eval_tf)
        test = _image_folder(test_dir, eval_tf, scan=True)
        if test.classes != train_aug.classes:
            raise DataError(f"imagefolder: {test_dir} has other classes than {root / 'train'}")
        trainval_index = np.arange(len(train_aug))
    else:
        if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in root.rglob("*")):
            raise DataError(f"imagefolder: no images under {root} ({layout})")
        train_aug = _image_folder(root, train_tf, scan=True)
        train_plain = _image_folder(root, eval_tf)
        trainval_index, test_index = stratified_split(np.asarray(train_aug.targets), 0.2, "test")
        test = Subset(train_plain, test_index.tolist())
    targets = np.asarray(train_aug.targets)[trainval_index]
    keep, held = stratified_split(targets, val_fraction, "validation")
    return DataBundle(name=name, train=Subset(train_aug, trainval_index[keep].tolist()),
                      val=Subset(train_plain, trainval_index[held].tolist()), test=test,
                      input_shape=(3, image_size, image_size),
                      num_classes=len(train_aug.classes), class_names=list(train_aug.classes),
                      augmented=augment, intensity=_intensity(*IMAGEFOLDER_MEAN_STD))
