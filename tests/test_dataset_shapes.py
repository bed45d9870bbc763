"""What a data set's spec says before anything is loaded (``DatasetSpec.sample_shape``,
``.classes``: used to refuse a wrong model or teacher before minutes of reading) is what loading
it gives."""

from __future__ import annotations

import pytest
from event_writers import random_events, write_cifar10dvs, write_gesture, write_nmnist

from neurokd.data import DATASETS, load_data
from neurokd.data.event_sets import CIFAR10_CLASSES

T = 2


def _nmnist(root):
    return write_nmnist(root, {(split, digit): [random_events(20, 34, 34, seed=digit + k)
                                                for k in range(2)]
                               for split in ("Train", "Test") for digit in range(10)})


def _gesture(root):
    users = ("user01_fluorescent", "user02_led", "user24_natural")
    recordings = {name: (random_events(300, 128, 128, seed=u, t0=10 ** 6, span=10 ** 6),
                         [(c, 10 ** 6 + 50_000 * c, 10 ** 6 + 50_000 * c + 40_000)
                          for c in range(1, 12)]) for u, name in enumerate(users)}
    return write_gesture(root, recordings, list(users[:2]), [users[2]])


def _cifar10dvs(root):
    return write_cifar10dvs(root, {c: [random_events(20, 128, 128, seed=k + i) for i in range(3)]
                                   for k, c in enumerate(CIFAR10_CLASSES)})


@pytest.mark.parametrize("name, options", [
    ("digits", {}),
    pytest.param("mnist1d", {}, marks=pytest.mark.slow),  # generates mnist1d
    ("cifar10", {}),
    ("imagefolder", {}),
    ("imagefolder", {"image_size": 12}),
    ("digits-dvs", {}),
    ("nmnist", {}),
    ("nmnist", {"event_size": 17}),
    ("dvsgesture", {"event_size": 32}),
    ("cifar10dvs", {"event_size": 64}),
])
def test_the_spec_knows_the_shape_and_classes_loading_gives(name, options, tmp_path, request):
    folders = {"cifar10": lambda: request.getfixturevalue("cifar10_dir"),
               "imagefolder": lambda: request.getfixturevalue("image_folder"),
               "nmnist": lambda: _nmnist(tmp_path / "nmnist"),
               "dvsgesture": lambda: _gesture(tmp_path / "gesture"),
               "cifar10dvs": lambda: _cifar10dvs(tmp_path / "cifar10dvs")}
    data_dir = str(folders[name]()) if name in folders else None
    spec = DATASETS[name]
    bundle = load_data(name, data_dir, val_fraction=0.5, timesteps=T, cache_dir=tmp_path,
                       **options)
    assert spec.sample_shape(options) == tuple(bundle.input_shape)
    assert spec.classes in (None, bundle.num_classes)
    assert (spec.classes is None) == (name == "imagefolder")  # class folders: known on reading
