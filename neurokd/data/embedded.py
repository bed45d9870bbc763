"""scikit-learn's digits, embedded in scikit-learn (mnist1d, generated locally, is in mnist1d.py)."""

from __future__ import annotations

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
                         val_fraction, [str(c) for c in range(10)], ((0.0,), (1.0,)))
