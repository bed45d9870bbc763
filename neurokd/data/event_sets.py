"""The three event-camera data sets in the folders their releases unpack to, never downloaded.

Each :class:`EventSet` knows its release's layout: which files hold which split's recordings,
their labels, and the reader of their format (``event_files.py``). A missing or wrong folder is
one error naming the path and the layout expected there.

- ``nmnist``: ``DIR/Train/<digit>/*.bin`` and ``DIR/Test/<digit>/*.bin`` (Train.zip and Test.zip
  of the release unpacked), 34 x 34 sensor, the release's train / test split.
- ``dvsgesture``: ``DIR/DvsGesture/`` (or ``DIR`` itself) with ``userNN_<light>.aedat``, their
  ``userNN_<light>_labels.csv`` (class 1..11, start and end in microseconds: each row is one
  sample, the events with start <= t < end) and ``trials_to_train.txt`` /
  ``trials_to_test.txt`` (DvsGesture.tar.gz unpacked), 128 x 128 sensor.
- ``cifar10dvs``: ``DIR/<class>/*.aedat`` for the ten CIFAR-10 classes (the ten class zips
  unpacked), 128 x 128 sensor. The release has no split: per class, the recordings sorted by
  their number, the first tenth is the test split (indices 0..99 of 1000, the split of
  spikingjelly's ``CIFAR10DVSTEBNSplit``).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from ..errors import DataError
from ..files.paths import check_inside, inside, open_regular, regular_size
from .event_files import Events, read_aedat2, read_aedat31, read_nmnist

GESTURES = ("hand clapping", "right hand wave", "left hand wave", "right arm clockwise",
            "right arm counter clockwise", "left arm clockwise", "left arm counter clockwise",
            "arm roll", "air drums", "air guitar", "other gestures")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")


@dataclass(frozen=True)
class Recording:
    """One file and the samples it holds: ``(label, start, end)`` windows, or one whole-file
    sample ``(label, None, None)``."""

    path: Path
    samples: tuple[tuple[int, int | None, int | None], ...]


@dataclass(frozen=True)
class EventSet:
    name: str
    sensor: tuple[int, int]                     # (H, W) of the camera
    classes: tuple[str, ...]
    layout: str                                 # the expected folder, for error messages
    split_rule: str                             # where the test split comes from (docs)
    file_format: str                            # what the files are and who reads them (docs)
    read: Callable[[Path, tuple[int, int]], Events]
    recordings: Callable[[Path, str], list[Recording]]   # (DIR, "train"|"test")

    def split(self, data_dir: str | Path, split: str) -> list[Recording]:
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise DataError(f"{self.name}: no folder {root} (expected {self.layout}; nothing "
                            "is downloaded)")
        found = self.recordings(root, split)
        if not found:
            raise DataError(f"{self.name}: no {split} recordings under {root} (expected "
                            f"{self.layout})")
        return found

    def samples(self, recordings: list[Recording]) -> Iterator[tuple[Events, int]]:
        """``(events, label)`` of every sample, reading each file once."""
        for recording in recordings:
            events = self.read(recording.path, self.sensor)
            for label, start, end in recording.samples:
                if start is None:
                    yield events, label
                else:
                    keep = (events["t"] >= start) & (events["t"] < end)
                    yield {key: value[keep] for key, value in events.items()}, label


def _number(path: Path) -> tuple[int, str]:
    digits = re.findall(r"\d+", path.stem)
    return (int(digits[-1]) if digits else -1, path.name)


def _class_files(root: Path, folder: Path, classes: tuple[str, ...], suffix: str, layout: str,
                 name: str) -> list[list[Path]]:
    """Per class, its files in ``folder/<class>/`` in number order; every class must have some.
    ``folder`` lies in the data folder ``root``: a link out of it, on the way to a class folder
    or as a file listed there, is refused by name (files/paths.py) before anything is read."""
    missing = [c for c in classes if not (folder / c).is_dir()]
    if missing:
        raise DataError(f"{name}: no class folder {folder / missing[0]} (expected {layout})")
    for path in (folder, *(folder / c for c in classes)):  # the link itself refused first
        check_inside(root, path, name)
    files = [sorted((folder / c).glob(f"*{suffix}"), key=_number) for c in classes]
    empty = [c for c, f in zip(classes, files, strict=True) if not f]
    if empty:
        raise DataError(f"{name}: no {suffix} files in {folder / empty[0]} (expected {layout})")
    for path in (p for group in files for p in group):  # a FIFO or a device: refused now,
        regular_size(path, f"{name} file")             # not after binning every file before it
    # a file that is no link lies in its class folder, checked above
    for path in (p for group in files for p in group if p.is_symlink()):
        check_inside(root, path, name)
    return files


NMNIST_LAYOUT = ("DIR/Train/<digit>/*.bin and DIR/Test/<digit>/*.bin, the N-MNIST release's "
                 "Train.zip and Test.zip unpacked")


def _nmnist(root: Path, split: str) -> list[Recording]:
    folder = root / ("Train" if split == "train" else "Test")
    if not folder.is_dir():
        raise DataError(f"nmnist: no folder {folder} (expected {NMNIST_LAYOUT})")
    digits = tuple(str(d) for d in range(10))
    files = _class_files(root, folder, digits, ".bin", NMNIST_LAYOUT, "nmnist")
    return [Recording(p, ((label, None, None),)) for label, group in enumerate(files)
            for p in group]


MAX_LIST_BYTES = 1 << 20  # a trial list or labels csv; the release's are under 10 KB
GESTURE_LAYOUT = ("DIR/DvsGesture/ (or DIR) holding userNN_<lighting>.aedat, "
                  "userNN_<lighting>_labels.csv, trials_to_train.txt and trials_to_test.txt: "
                  "DvsGesture.tar.gz unpacked")


def _small_text(path: Path, what: str) -> str:
    """A trial list or labels file (a few KB in the release), read only if it is a regular
    file of at most MAX_LIST_BYTES."""
    with open_regular(path, what) as handle:
        data = handle.read(MAX_LIST_BYTES + 1)
    if len(data) > MAX_LIST_BYTES:
        raise DataError(f"{what} {path} is over {MAX_LIST_BYTES:,} bytes; the release's are "
                        "a few KB")
    return data.decode("utf-8", errors="replace")


def _gesture_rows(path: Path) -> tuple[tuple[int, int, int], ...]:
    text = _small_text(path, "labels file")
    try:
        rows = np.loadtxt(io.StringIO(text), dtype=np.int64, delimiter=",", skiprows=1,
                          ndmin=2)
    except (OSError, ValueError) as exc:
        raise DataError(f"corrupt labels file {path}: {str(exc).splitlines()[0]} (expected a "
                        "header line and rows class,startTime_usec,endTime_usec)") from None
    if rows.size and (rows.shape[1] != 3 or rows[:, 0].min() < 1
                      or rows[:, 0].max() > len(GESTURES) or (rows[:, 2] <= rows[:, 1]).any()):
        raise DataError(f"corrupt labels file {path}: expected rows class (1..{len(GESTURES)}),"
                        "startTime_usec, endTime_usec with start < end")
    return tuple((int(c) - 1, int(s), int(e)) for c, s, e in rows)


def _gesture(root: Path, split: str) -> list[Recording]:
    folder = root / "DvsGesture" if (root / "DvsGesture").is_dir() else root
    trials = folder / f"trials_to_{split}.txt"
    if not os.path.lexists(trials):
        raise DataError(f"dvsgesture: no file {trials} (expected {GESTURE_LAYOUT})")
    lines = _small_text(trials, "trial list").split("\n")  # numbered as an editor shows them
    recordings = []
    for number, name in ((n, line.strip()) for n, line in enumerate(lines, 1)):
        if not name:
            continue
        # The list comes with the download: what it names must lie in its own folder
        # (files/paths.py), the labels file beside the recording as well.
        aedat = inside(folder, name, trials, number)
        named = PurePosixPath(name)
        labels = inside(folder, str(named.parent / f"{named.stem}_labels.csv"), trials, number)
        for needed in (aedat, labels):
            if not os.path.lexists(needed):
                raise DataError(f"dvsgesture: {trials.name} lists {name} (line {number}), but "
                                f"there is no {needed} (expected {GESTURE_LAYOUT})")
            regular_size(needed, "dvsgesture file")
        recordings.append(Recording(aedat, _gesture_rows(labels)))
    return recordings


CIFAR10DVS_LAYOUT = ("DIR/<class>/*.aedat for the ten classes (airplane ... truck): the "
                     "CIFAR10-DVS release's class zips unpacked")


def _cifar10dvs(root: Path, split: str) -> list[Recording]:
    files = _class_files(root, root, CIFAR10_CLASSES, ".aedat", CIFAR10DVS_LAYOUT,
                         "cifar10dvs")
    recordings = []
    for label, group in enumerate(files):
        test = max(1, len(group) // 10)
        chosen = group[:test] if split == "test" else group[test:]
        recordings += [Recording(p, ((label, None, None),)) for p in chosen]
    return recordings


EVENT_SETS: dict[str, EventSet] = {s.name: s for s in (
    EventSet("nmnist", (34, 34), tuple(str(d) for d in range(10)), NMNIST_LAYOUT,
             "the release's Test/ (10,000 of 70,000)",
             "ATIS .bin, 5 bytes per event (spikingjelly load_ATIS_bin)", read_nmnist, _nmnist),
    EventSet("dvsgesture", (128, 128), GESTURES, GESTURE_LAYOUT,
             "the recordings listed in trials_to_test.txt (288 of 1,464 gestures)",
             "AEDAT 3.1 polarity packets (spikingjelly load_aedat_v3); one sample per labels-csv "
             "row, start <= t < end", read_aedat31, _gesture),
    EventSet("cifar10dvs", (128, 128), CIFAR10_CLASSES, CIFAR10DVS_LAYOUT,
             "per class, the first tenth of the recordings in number order (0..99 of 1,000, "
             "spikingjelly's CIFAR10DVSTEBNSplit)",
             "jAER AEDAT 2.0, DVS128 addresses (spikingjelly cifar10_dvs._load_origin_data: "
             "x = 127 - y_raw, y = 127 - x_raw, p = 1 - p_raw)", read_aedat2, _cifar10dvs),
)}


def sample_count(recordings: list[Recording]) -> int:
    return sum(len(r.samples) for r in recordings)


def fingerprint(recordings: list[Recording]) -> list[tuple[str, int, int]]:
    """What the cache key holds of the files: name, size and modification time of each."""
    rows = []
    for recording in recordings:
        stat = recording.path.stat()
        rows.append((str(recording.path.resolve()), stat.st_size, stat.st_mtime_ns))
    return rows
