"""Data sets by name, each with fixed train / validation / test splits (docs/data.md).

``DATASETS`` maps a name to a :class:`DatasetSpec`: how to load it, whether it needs
``--data-dir``, whether its samples are event frames (and the camera's size) and a one-line
summary. RunConfig's ``--dataset`` choices, the data-dir and event-option checks and the docs
table come from it: a new data set is one module plus one line here. Nothing is downloaded:
digits ships with scikit-learn, mnist1d and digits-dvs are generated locally, CIFAR,
ImageFolder and the event-camera sets are read from a folder the user gives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import DataError
from .embedded import load_digits
from .event_sets import EVENT_SETS
from .events import EVENT_FRAMES, load_digits_dvs, load_event_set
from .frames import downsampling
from .images import load_cifar, load_imagefolder
from .mnist1d import load_mnist1d
from .rate import RATE_AUGMENT
from .splits import (
    SPLIT_SEED,
    DataBundle,
    Indexed,
    make_loader,
    stratified_split,
    stratified_subset,
)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    load: Callable[..., DataBundle]   # load(name=, data_dir=, val_fraction=, augment=, ...)
    needs_data_dir: bool
    summary: str
    sensor: tuple[int, int] | None = None   # (H, W) of the event camera; None: static samples
    shape: tuple[int, ...] | None = None    # a static sample's shape; None: set by options
    classes: int | None = None              # None: read from the data (ImageFolder)
    batch_augment: bool = False             # --augment transforms whole batches

    @property
    def events(self) -> bool:
        """Samples are event frames [T, 2, H, W] (spikes already: no --encoding)."""
        return self.sensor is not None

    def sample_shape(self, settings: dict) -> tuple[int, ...]:
        """One sample's shape (an event frame's, without T) from a run's settings, known
        before anything is loaded: a wrong pairing is refused before minutes of loading."""
        if self.sensor is not None:
            factor = downsampling(self.sensor, settings.get("event_size"), self.name)
            return (2, self.sensor[0] // factor, self.sensor[1] // factor)
        if self.shape is not None:
            return self.shape
        side = settings.get("image_size") or 32
        return (3, side, side)


DATASETS: dict[str, DatasetSpec] = {d.name: d for d in (
    DatasetSpec("digits", load_digits, False,
                "scikit-learn's 8x8 digits (ships with scikit-learn), 1 x 8 x 8 in [0, 1]",
                shape=(1, 8, 8), classes=10),
    DatasetSpec("mnist1d", load_mnist1d, False,
                "mnist1d generated locally from its fixed seed, 1 x 1 x 40; --augment: its "
                "generator's shift, scale and noise", shape=(1, 1, 40), classes=10,
                batch_augment=True),
    DatasetSpec("cifar10", load_cifar, True,
                "CIFAR-10 python-pickle batches from --data-dir, 3 x 32 x 32",
                shape=(3, 32, 32), classes=10),
    DatasetSpec("cifar100", load_cifar, True,
                "CIFAR-100 python-pickle batches from --data-dir, 3 x 32 x 32",
                shape=(3, 32, 32), classes=100),
    DatasetSpec("imagefolder", load_imagefolder, True,
                "class folders of images from --data-dir, 3 x S x S (--image-size)"),
    DatasetSpec("digits-dvs", load_digits_dvs, False,
                "digits recorded by a simulated event camera in three saccades (generated "
                "locally, seeded), T x 2 x 20 x 20 event frames", (20, 20), classes=10),
    DatasetSpec("nmnist", load_event_set, True,
                "N-MNIST .bin events from --data-dir (Train/, Test/), T x 2 x 34 x 34 frames",
                EVENT_SETS["nmnist"].sensor, classes=10),
    DatasetSpec("dvsgesture", load_event_set, True,
                "DVS128 Gesture AEDAT 3.1 + label csv files from --data-dir, 11 classes, "
                "T x 2 x 128 x 128 frames", EVENT_SETS["dvsgesture"].sensor, classes=11),
    DatasetSpec("cifar10dvs", load_event_set, True,
                "CIFAR10-DVS AEDAT 2.0 class folders from --data-dir, T x 2 x 128 x 128 frames",
                EVENT_SETS["cifar10dvs"].sensor, classes=10),
)}

# What a loader reads from a run's settings (RunConfig fields of the same names).
DATA_OPTIONS = ("data_dir", "val_fraction", "augment", "image_size", "encoding", "timesteps",
                "seed", "event_size", "event_frames", "cache_dir")


def load_data(name: str, data_dir: str | None = None, val_fraction: float = 0.1,
              augment: bool | None = None, image_size: int = 32, *,
              encoding: str | None = None, timesteps: int | None = None, seed: int = 0,
              **options) -> DataBundle:
    """The three splits of data set ``name``; ``options`` go to that data set's loader (event
    sets: ``event_size``, ``event_frames``, ``cache_dir``, ``reporter``). ``encoding="rate"``
    turns static samples into seeded spike trains over ``timesteps`` (``rate.py``)."""
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}")
    spec = DATASETS[name]
    if spec.events and encoding is not None:
        raise DataError(f"{name} is event data, spikes already: drop --encoding {encoding}")
    if encoding == "rate" and augment and spec.batch_augment:  # before generating the data
        raise DataError(RATE_AUGMENT.format(name=name))
    bundle = spec.load(name=name, data_dir=data_dir, val_fraction=val_fraction,
                       augment=augment, image_size=image_size, timesteps=timesteps, **options)
    if encoding == "rate":
        from .rate import rate_encoded

        bundle = rate_encoded(bundle, int(timesteps or 0), seed)
    return bundle


def load_run_data(settings, reporter=None, **overrides) -> DataBundle:
    """The data of a run: ``settings`` is a RunConfig, or a dict of its fields (a checkpoint's
    config, an export's metadata); missing fields take their defaults."""
    values = settings if isinstance(settings, dict) else settings.to_dict()
    chosen = {key: values[key] for key in DATA_OPTIONS if values.get(key) is not None}
    return load_data(values["dataset"], **{**chosen, **overrides}, reporter=reporter)


__all__ = ["DATASETS", "DATA_OPTIONS", "EVENT_FRAMES", "DatasetSpec", "DataBundle", "Indexed",
           "SPLIT_SEED", "load_data", "load_run_data", "make_loader", "stratified_split",
           "stratified_subset"]
