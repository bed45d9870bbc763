"""CIFAR-10/100 from the official python-pickle folders, read without running pickled code.

The batches are pickles; torchvision's reader calls ``pickle.load`` on them, which would run any
code a tampered file carries. This reader takes torchvision's file lists but unpickles with an
allow-list (numpy arrays, lists, dicts, strings), so a crafted batch is refused instead.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ..errors import DataError
from ..files.budget import check_bytes
from ..files.paths import open_regular

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")


MAX_BATCH_BYTES = 1 << 30   # the official batches are 31 MB (CIFAR-100's train file 155 MB)


def read_batch(path: Path) -> dict[str, Any]:
    """One batch file: a regular file (a link to /dev/zero, a FIFO are not one: refused by
    ``files/paths.py`` before anything waits on them) whose size is checked before it is
    read, unpickled with the allow-list above."""
    if not path.exists():
        raise DataError(f"missing CIFAR file {path}")
    try:
        with open_regular(path, "CIFAR batch") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > MAX_BATCH_BYTES:
                raise DataError(f"{path} is {size:,} bytes; a CIFAR batch has at most "
                                f"{MAX_BATCH_BYTES:,}")
            check_bytes(3 * size, f"{path}: reading the CIFAR batch")  # bytes, arrays, images
            raw = handle.read()
        entry = _ArrayUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except FileNotFoundError:
        raise DataError(f"missing CIFAR file {path}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, OSError) as exc:
        raise DataError(f"{path} is not a CIFAR python batch: {exc}") from None
    if not isinstance(entry, dict):
        raise DataError(f"{path} is not a CIFAR python batch (no dict inside)")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _checked_data(path: Path, data: Any) -> np.ndarray:
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072:
        found = (f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray)
                 else type(data).__name__)
        raise DataError(f"{path}: 'data' must be a uint8 array [N, 3072] (32x32 RGB rows), "
                        f"not {found}")
    return data


def _checked_labels(path: Path, targets: Any, count: int) -> list[int]:
    if isinstance(targets, np.ndarray) and targets.dtype.kind in "iu" and targets.ndim == 1:
        targets = targets.tolist()
    if not isinstance(targets, list) or not all(
            isinstance(t, int | np.integer) and not isinstance(t, bool) for t in targets):
        raise DataError(f"{path}: 'labels' must be a list of whole numbers, not "
                        f"{type(targets).__name__}" + (f" holding {type(targets[0]).__name__}"
                                                       if isinstance(targets, list) and targets
                                                       else ""))
    if len(targets) != count:
        raise DataError(f"{path}: {len(targets)} labels for {count} images")
    return [int(t) for t in targets]


class CifarPickle(Dataset):
    """A CIFAR split as ``(transform(PIL image), label)``; torchvision's file names and layout."""

    def __init__(self, folder: Path, variant: str, train: bool, transform=None):
        from torchvision import datasets

        spec = datasets.CIFAR10 if variant == "cifar10" else datasets.CIFAR100
        files = spec.train_list if train else spec.test_list
        images, labels = [], []
        for name, _md5 in files:
            entry = read_batch(folder / name)
            data = entry.get("data")
            targets = entry.get("labels", entry.get("fine_labels"))
            images.append(_checked_data(folder / name, data))
            labels.extend(_checked_labels(folder / name, targets, len(data)))
        self.data = np.vstack(images).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        self.targets = labels
        meta = read_batch(folder / spec.meta["filename"])
        names = meta.get(spec.meta["key"])
        if not isinstance(names, list):
            raise DataError(f"{folder / spec.meta['filename']}: no {spec.meta['key']!r} list")
        self.classes = [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]
        if labels and (min(labels) < 0 or max(labels) >= len(self.classes)):
            raise DataError(f"{folder}: labels outside 0..{len(self.classes) - 1}")
        self.transform = transform

    def with_transform(self, transform) -> CifarPickle:
        """The same images under another transform (no second read from disk)."""
        twin = object.__new__(CifarPickle)
        twin.__dict__.update(self.__dict__, transform=transform)
        return twin

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        from PIL import Image

        image = Image.fromarray(self.data[index])
        return (self.transform(image) if self.transform else image), self.targets[index]
