"""The embedded data sets: scikit-learn's digits and the locally generated mnist1d."""

from __future__ import annotations

import functools

import numpy as np

from ..errors import DataError
from .splits import stratified_split, tensor_bundle


def load_digits(name, val_fraction, augment, **_):
    from sklearn import datasets

    if augment:
        raise DataError("digits has no augmentation; drop --augment")
    digits = datasets.load_digits()
    x = (digits.data / 16.0).reshape(-1, 1, 8, 8)
    train, test = stratified_split(digits.target, 0.2)
    return tensor_bundle(name, x[train], digits.target[train], x[test], digits.target[test],
                         val_fraction, [str(c) for c in range(10)])


@functools.lru_cache(maxsize=1)
def _mnist1d_arrays() -> tuple[np.ndarray, ...]:
    """mnist1d from its fixed seed (seconds to generate, the same every time: kept)."""
    from mnist1d.data import get_dataset_args, make_dataset

    data = make_dataset(get_dataset_args())
    # Kept 2-D (1 x 1 x 40) so one set of conv / export code serves every data set.
    return (np.asarray(data["x"]).reshape(-1, 1, 1, 40), np.asarray(data["y"]),
            np.asarray(data["x_test"]).reshape(-1, 1, 1, 40), np.asarray(data["y_test"]))


def load_mnist1d(name, val_fraction, augment, **_):
    if augment:
        raise DataError("mnist1d has no augmentation; drop --augment")
    x_train, y_train, x_test, y_test = (a.copy() for a in _mnist1d_arrays())  # callers own theirs
    return tensor_bundle(name, x_train, y_train, x_test, y_test, val_fraction,
                         [str(c) for c in range(10)])
