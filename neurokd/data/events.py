"""Event data sets as bundles of cached frames: the three releases and digits-dvs.

A sample is ``[T, 2, H, W]`` frames (channel 0 OFF, channel 1 ON events; ``frames.py``), binary
(an event in that pixel, polarity and frame: 1) unless ``event_frames="counts"``; batches are
``[T, B, 2, H, W]``. The frames come from the cache, which is built on first use (spikingjelly
reads the files, ``frames.bin_events`` bins them) and reused after; the validation split is
carved from the training split as for every data set.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch.utils.data import Subset

from ..errors import DataError
from ..runtime.progress import Reporter
from .frames import (
    CachedFrames,
    SplitSource,
    bin_events,
    build_cache,
    cache_key,
    cache_root,
    downsampling,
)
from .splits import DataBundle, stratified_split

EVENT_FRAMES = {"binary": "1 where a pixel had at least one event of that polarity in the frame",
                "counts": "the number of events per pixel, polarity and frame"}


def _bundle(name: str, classes: tuple[str, ...], sensor: tuple[int, int], identity: dict,
            sources: Callable[[], dict[str, SplitSource]], options: dict) -> DataBundle:
    """Open (building first if needed) the cache of ``identity`` and split it."""
    if options.get("augment"):
        raise DataError(f"{name} has no augmentation; drop --augment")
    timesteps = int(options.get("timesteps") or 0)
    if timesteps < 1:
        raise DataError(f"{name}: event frames need timesteps >= 1, not {timesteps}")
    frames = options.get("event_frames") or "binary"
    if frames not in EVENT_FRAMES:
        raise DataError(f"event_frames must be one of {', '.join(EVENT_FRAMES)}, not {frames!r}")
    factor = downsampling(sensor, options.get("event_size"), name)
    shape = (timesteps, 2, sensor[0] // factor, sensor[1] // factor)
    identity = {**identity, "timesteps": timesteps, "factor": factor}
    root = cache_root(options.get("cache_dir"))
    key = f"{name}-T{timesteps}-{shape[-1]}px-{cache_key(identity)}"
    folder = root / key
    if not (folder / "meta.json").is_file():
        folder = build_cache(root, key, identity, sources(), shape,
                             lambda events: bin_events(events, timesteps, sensor, factor),
                             options.get("reporter") or Reporter(), name)
    binary = frames == "binary"
    train, test = (CachedFrames(folder, split, binary, shape, len(classes))
                   for split in ("train", "test"))
    keep, held = stratified_split(train.targets, options.get("val_fraction", 0.1))
    return DataBundle(name=name, train=Subset(train, keep.tolist()),
                      val=Subset(train, held.tolist()), test=test, input_shape=shape[1:],
                      num_classes=len(classes), class_names=list(classes), augmented=False,
                      intensity=None, time_major=True)


def load_event_set(name: str, data_dir: str | None, **options) -> DataBundle:
    """N-MNIST, DVS128 Gesture or CIFAR10-DVS from the release unpacked in ``data_dir``."""
    from .event_sets import EVENT_SETS, fingerprint, sample_count

    spec = EVENT_SETS[name]
    if not data_dir:
        raise DataError(f"{name} needs --data-dir (expected {spec.layout})")
    recordings = {split: spec.split(data_dir, split) for split in ("train", "test")}
    identity = {"dataset": name, "root": str(Path(data_dir).expanduser().resolve()),
                "files": {split: [(*row, r.samples) for r, row in
                                  zip(recs, fingerprint(recs), strict=True)]
                          for split, recs in recordings.items()}}

    def sources() -> dict[str, SplitSource]:
        return {split: SplitSource(spec.samples(recs), sample_count(recs))
                for split, recs in recordings.items()}

    return _bundle(name, spec.classes, spec.sensor, identity, sources, options)


def load_digits_dvs(name: str, **options) -> DataBundle:
    """digits-dvs (``digits_dvs.py``), generated on first use and cached as frames."""
    from . import digits_dvs

    identity = {"dataset": name, "generator": digits_dvs.GENERATOR_VERSION,
                "seed": digits_dvs.SEED}

    def sources() -> dict[str, SplitSource]:
        streams, labels = digits_dvs.generate(digits_dvs.SEED)
        train, test = stratified_split(labels, 0.2)  # digits' own held-out test split
        return {split: SplitSource(((streams[i], int(labels[i])) for i in index), len(index))
                for split, index in (("train", train), ("test", test))}

    return _bundle(name, tuple(str(d) for d in range(10)), digits_dvs.SENSOR, identity,
                   sources, options)
