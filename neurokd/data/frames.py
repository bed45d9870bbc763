"""Event recordings binned into frames, and the on-disk cache that keeps them between epochs.

Binning is spikingjelly's ``integrate_events_by_fixed_frames_number(split_by="number")``: the
recording's events in file order cut into T runs of ``N // T`` events (the last run also takes
the remainder), each run one frame ``[2, H, W]`` of event counts, ``frame[p, y, x]``: channel 0
is OFF (polarity 0), channel 1 is ON (polarity 1). ``--event-size S`` bins ``x // f``,
``y // f`` with ``f = sensor / S``, which is 2x2 (fxf) sum pooling of the full-size frames.

The cache (one folder per data set, source files, T and size) holds per split
``<split>.frames.npy``, uint16 ``[N, T, 2, H, W]`` counts, and ``<split>.labels.npy``, written
sample by sample in chunks, in a temporary folder renamed into place when complete (so a
crashed build leaves nothing that is trusted). Samples are read back one at a time by offset
(``os.pread``), never by mapping the whole file: pages of a memory map count towards the
process's resident memory once touched, so an epoch over a mapped CIFAR10-DVS cache would hold
all of it; pread keeps memory at one batch whatever the data set's size.

Where it lives: ``--cache-dir``, else ``$NEUROKD_CACHE_DIR`` (folders that must exist), else
``$XDG_CACHE_HOME/neurokd/frames`` (``~/.cache/neurokd/frames``, created). Never in the data
folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError, DataError, WriteError
from ..files.npz import read_npy_header
from ..files.paths import open_regular
from ..runtime.progress import Reporter
from ..text import first_line
from .event_files import Events

CACHE_ENV = "NEUROKD_CACHE_DIR"
CACHE_FORMAT = 1               # bump when the binning or the files change meaning
FRAME_DTYPE = np.dtype("<u2")  # event counts per pixel, polarity and frame
CHUNK_BYTES = 8 << 20          # written to disk every 8 MB of frames
MAX_COUNT = np.iinfo(FRAME_DTYPE).max


def cache_root(cache_dir: str | Path | None) -> Path:
    """The folder that holds frames caches (module docstring): a folder the user names must
    exist; the default one is created."""
    for given, what in ((cache_dir, "--cache-dir"), (os.environ.get(CACHE_ENV), f"${CACHE_ENV}")):
        if given:
            root = Path(given).expanduser()
            if not root.is_dir():
                raise DataError(f"{what} {root} is not a folder (create it first; without "
                                f"--cache-dir and ${CACHE_ENV} the cache is in "
                                "~/.cache/neurokd/frames)")
            return root
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    root = base / "neurokd" / "frames"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the frames cache folder {root}: "
                        f"{exc.strerror or exc}") from None
    return root


def downsampling(sensor: tuple[int, int], size: int | None, dataset: str = "") -> int:
    """The factor f that bins a ``sensor`` (H, W) camera to ``size`` pixels a side."""
    if size is None:
        return 1
    height, width = sensor
    if not isinstance(size, int) or isinstance(size, bool) or size < 1 or height % size \
            or width % size or height // size != width // size:
        sides = [height // f for f in range(1, height + 1)
                 if height % f == 0 and width % f == 0 and height // f == width // f]
        raise ConfigError(f"event_size must divide the {width}x{height} sensor of "
                          f"{dataset or 'the camera'} evenly ({', '.join(map(str, sides))}), "
                          f"not {size!r}")
    return height // size


def bin_events(events: Events, timesteps: int, sensor: tuple[int, int],
               factor: int) -> np.ndarray:
    """``[T, 2, H/f, W/f]`` uint16 event counts of one sample (module docstring)."""
    from spikingjelly.datasets import integrate_events_by_fixed_frames_number

    height, width = sensor[0] // factor, sensor[1] // factor
    pooled = {"t": events["t"], "x": events["x"] // factor, "y": events["y"] // factor,
              "p": events["p"]}
    frames = integrate_events_by_fixed_frames_number(pooled, "number", timesteps, height, width)
    return np.minimum(frames, MAX_COUNT).astype(FRAME_DTYPE)


@dataclass(frozen=True)
class SplitSource:
    """What goes into one split of a cache: its samples as ``(events, label)`` and how many."""

    samples: Iterable[tuple[Events, int]]
    count: int


def cache_key(identity: dict) -> str:
    text = json.dumps({"format": CACHE_FORMAT, **identity}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _write_split(folder: Path, split: str, source: SplitSource, frame_shape: tuple[int, ...],
                 bin_one, reporter: Reporter, label: str) -> None:
    """``<split>.frames.npy`` sample by sample (CHUNK_BYTES at a time) and its labels."""
    shape = (source.count, *frame_shape)
    labels = np.zeros(source.count, dtype=np.int64)
    frame_bytes = int(np.prod(frame_shape)) * FRAME_DTYPE.itemsize
    per_chunk = max(1, CHUNK_BYTES // frame_bytes)
    task = reporter.start(f"{label}: binning the {split} split (samples)", source.count)
    written = 0
    with open(folder / f"{split}.frames.npy", "wb") as handle:
        np.lib.format.write_array_header_1_0(
            handle, {"descr": FRAME_DTYPE.str, "fortran_order": False, "shape": shape})
        chunk: list[bytes] = []
        for events, target in source.samples:
            if written >= source.count:
                raise DataError(f"{label}: more {split} samples than counted ({source.count})")
            chunk.append(bin_one(events).tobytes())
            labels[written] = target
            written += 1
            reporter.advance(task)
            if len(chunk) == per_chunk:
                handle.write(b"".join(chunk))
                chunk.clear()
        handle.write(b"".join(chunk))
    if written != source.count:
        raise DataError(f"{label}: {written} {split} samples, {source.count} counted")
    np.save(folder / f"{split}.labels.npy", labels)
    reporter.finish(task, f"{written} samples")


def build_cache(root: Path, key: str, identity: dict, splits: dict[str, SplitSource],
                frame_shape: tuple[int, ...], bin_one, reporter: Reporter | None = None,
                label: str = "frames") -> Path:
    """The cache folder ``root/key``: built now (atomically) unless it is there already."""
    final = root / key
    if (final / "meta.json").is_file():
        return final
    if final.exists():
        raise DataError(f"frames cache folder {final} is incomplete (no meta.json); delete it "
                        "to rebuild it")
    needed = sum(s.count for s in splits.values()) * math.prod(frame_shape) * \
        FRAME_DTYPE.itemsize
    free = shutil.disk_usage(root).free
    if needed > free:
        raise DataError(f"{label}: the frames cache needs {needed / 2**30:.2f} GiB, {root} has "
                        f"{free / 2**30:.2f} GiB free (lower --timesteps or --event-size, or "
                        "give --cache-dir elsewhere)")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", suffix=".tmp", dir=root))
    except OSError as exc:
        raise WriteError(f"cannot write the frames cache in {root}: {exc.strerror or exc}") \
            from None
    try:
        _fill(tmp, identity, splits, frame_shape, bin_one, reporter or Reporter(), label)
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished the same cache first: use that one
            if not (final / "meta.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:  # the readers turn their own into DataError: these are writes
        shutil.rmtree(tmp, ignore_errors=True)
        raise WriteError(f"cannot write the frames cache in {root}: {exc.strerror or exc}") \
            from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _fill(tmp: Path, identity: dict, splits: dict[str, SplitSource],
          frame_shape: tuple[int, ...], bin_one, reporter: Reporter, label: str) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; the cache follows the umask
    for split, source in splits.items():
        _write_split(tmp, split, source, frame_shape, bin_one, reporter, label)
    meta = {**identity, "format": CACHE_FORMAT, "frame_shape": list(frame_shape),
            "dtype": FRAME_DTYPE.str, "counts": {s: v.count for s, v in splits.items()}}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str) + "\n")


class CachedFrames(Dataset):
    """``(frames [T, 2, H, W] float32, label)`` of one split of a cache, read by offset."""

    time_major = True

    def __init__(self, folder: Path, split: str, binary: bool,
                 frame_shape: tuple[int, ...] | None = None, num_classes: int | None = None):
        self.path = folder / f"{split}.frames.npy"
        self.binary = binary
        self.shape, self.offset = _frames_header(self.path, frame_shape)
        self.targets = _labels(folder / f"{split}.labels.npy", self.shape[0], num_classes)
        self.sample_bytes = math.prod(self.shape[1:]) * FRAME_DTYPE.itemsize
        self._fd: int | None = None
        self._pid = -1

    def __len__(self) -> int:
        return self.shape[0]

    def _handle(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # a forked worker opens its own
            with _opened(self.path) as handle:  # a FIFO swapped in since: refused, not waited on
                self._fd, self._pid = os.dup(handle.fileno()), os.getpid()
        return self._fd

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(index)
        raw = os.pread(self._handle(), self.sample_bytes, self.offset + index * self.sample_bytes)
        if len(raw) != self.sample_bytes:
            raise DataError(f"frames cache file {self.path} is truncated; delete its folder "
                            f"{self.path.parent} to rebuild it")
        counts = np.frombuffer(raw, dtype=FRAME_DTYPE).reshape(self.shape[1:])
        frames = torch.from_numpy(counts.astype(np.float32))
        return (frames.clamp_(max=1.0) if self.binary else frames), int(self.targets[index])

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None, "_pid": -1}


def _opened(path: Path):
    """A cache file opened for reading, refused unless it is a regular file (a FIFO planted in
    the cache would block the open forever; ``files/paths.py``)."""
    try:
        return open_regular(path, "frames cache file")
    except DataError as exc:
        raise DataError(f"{exc}; delete its folder {path.parent} to rebuild it") from None


def _frames_header(path: Path, frame_shape: tuple[int, ...] | None = None
                   ) -> tuple[tuple[int, ...], int]:
    """Shape and data offset of a cached frames file, checked against its size (and the frame
    shape the cache was built for): sizes are Python ints, so no product wraps."""
    rebuild = f"delete its folder {path.parent} to rebuild it"
    try:
        with _opened(path) as handle:
            shape, fortran, dtype, offset = read_npy_header(handle)
            size = os.fstat(handle.fileno()).st_size
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise DataError(f"frames cache file {path} is unreadable ({first_line(exc, 160)}); "
                        f"{rebuild}") from None
    expected = offset + math.prod(shape) * FRAME_DTYPE.itemsize
    if frame_shape is not None and tuple(shape[1:]) != tuple(frame_shape):
        raise DataError(f"frames cache file {path} holds frames of shape "
                        f"{tuple(shape[1:])}, not {tuple(frame_shape)}; {rebuild}")
    if dtype != FRAME_DTYPE or fortran or len(shape) != 5 or size != expected:
        raise DataError(f"frames cache file {path} is damaged (dtype {dtype}, shape {shape}, "
                        f"{size} bytes); {rebuild}")
    return shape, offset


def _labels(path: Path, count: int, num_classes: int | None = None) -> np.ndarray:
    """The labels file: its header checked (shape, dtype, size on disk) before it is read,
    then every label inside the class range."""
    rebuild = f"delete its folder {path.parent} to rebuild it"
    try:
        with _opened(path) as handle:
            shape, fortran, dtype, offset = read_npy_header(handle)
            size = os.fstat(handle.fileno()).st_size
            if shape != (count,) or dtype.kind not in "iu" or fortran or \
                    size != offset + count * dtype.itemsize:
                raise DataError(f"frames cache file {path} does not hold {count} labels (its "
                                f"header claims {dtype} of shape {shape}); {rebuild}")
            labels = np.fromfile(handle, dtype=dtype, count=count)
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise DataError(f"frames cache file {path} is unreadable ({first_line(exc, 160)}); "
                        f"{rebuild}") from None
    if count and (labels.min() < 0 or (num_classes is not None and labels.max() >= num_classes)):
        bad = int(labels.min() if labels.min() < 0 else labels.max())
        raise DataError(f"frames cache file {path} holds label {bad}, outside the "
                        f"{num_classes} classes; {rebuild}")
    return labels.astype(np.int64)
