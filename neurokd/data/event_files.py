"""The event files of N-MNIST, DVS128 Gesture and CIFAR10-DVS, read with spikingjelly 2.0.

spikingjelly's readers decode the original formats (tonic 1.7's readers of the AEDAT formats
crash, and its data set classes read only its own re-packaged copies; docs/data.md):

- N-MNIST ``.bin`` (``spikingjelly.datasets.load_ATIS_bin``): 5 bytes per event, no header;
  x, y, polarity bit, 23-bit microsecond timestamp.
- DVS128 Gesture AEDAT 3.1 (``spikingjelly.datasets.load_aedat_v3``): ``#`` header lines ending
  in CRLF up to ``#!END-HEADER``, then packets of a 28-byte header ``<hhiiiiii`` (type, source,
  event size, timestamp offset, timestamp overflow, capacity, number, valid) and ``capacity x
  size`` bytes; polarity events (type 1) are ``<I data, <i timestamp``.
- CIFAR10-DVS AEDAT 2.0 (``spikingjelly.datasets.cifar10_dvs._load_origin_data``): ``#``
  header lines, then big-endian ``>u4 address, >u4 timestamp`` pairs; spikingjelly returns
  ``x = 127 - y_raw``, ``y = 127 - x_raw`` and ``p = 1 - p_raw``.

Before a file reaches a reader, its structure is checked here (sizes, headers, every AEDAT 3.1
packet header against the file's length), so a corrupt or truncated file is one error naming
it, and no reader allocates by a number read from a damaged file. After reading, every event
must lie on the sensor. Events come back as spikingjelly's dict of ``t``, ``x``, ``y``, ``p``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..files.paths import open_regular, regular_size

Events = dict[str, np.ndarray]

AEDAT31_MAGIC = b"#!AER-DAT3.1"
AEDAT2_MAGIC = b"#!AER-DAT2.0"
AEDAT_END_HEADER = b"#!END-HEADER\r\n"
MAX_HEADER_BYTES = 1 << 20
PACKET_HEADER = struct.Struct("<hhiiiiii")
POLARITY_EVENT, POLARITY_EVENT_SIZE = 1, 8


def _spikingjelly_datasets():
    """spikingjelly.datasets (3-4 s to import: only when an event file is read)."""
    import spikingjelly.datasets as sj_datasets

    return sj_datasets


def _corrupt(path: Path, kind: str, why: str) -> DataError:
    return DataError(f"corrupt {kind} file {path}: {why}")


def _size(path: Path, kind: str) -> int:
    """The size of a recording, refused unless it is a regular file: spikingjelly opens it by
    name, and a FIFO would block that open, /dev/zero pass as an empty recording."""
    return regular_size(path, f"{kind} file")


def _opened(path: Path, kind: str):
    return open_regular(path, f"{kind} file")


def _on_sensor(path: Path, kind: str, events: Events, sensor: tuple[int, int]) -> Events:
    height, width = sensor
    x, y, p = events["x"], events["y"], events["p"]
    if len({len(events[k]) for k in ("t", "x", "y", "p")}) != 1:
        raise _corrupt(path, kind, "the event fields have different lengths")
    if x.size and (int(x.max()) >= width or int(y.max()) >= height or int(x.min()) < 0
                   or int(y.min()) < 0 or not np.isin(p, (0, 1)).all()):
        raise _corrupt(path, kind, f"events outside the {width}x{height} sensor "
                       f"(x up to {int(x.max())}, y up to {int(y.max())}) or a polarity not 0/1")
    return events


def read_nmnist(path: Path, sensor: tuple[int, int]) -> Events:
    """One N-MNIST ``.bin`` recording."""
    size = _size(path, "N-MNIST")
    if size % 5:
        raise _corrupt(path, "N-MNIST", f"{size} bytes is not a whole number of 5-byte events")
    try:
        events = _spikingjelly_datasets().load_ATIS_bin(str(path))
    except OSError as exc:
        raise DataError(f"cannot read N-MNIST file {path}: {exc.strerror or exc}") from None
    return _on_sensor(path, "N-MNIST", events, sensor)


def _aedat31_body(handle, path: Path) -> int:
    """The offset of the first packet, after checking the header lines."""
    first = handle.readline(64)
    if not first.startswith(AEDAT31_MAGIC):
        raise _corrupt(path, "AEDAT 3.1", f"it starts with {first[:16]!r}, not {AEDAT31_MAGIC!r}")
    while True:
        line = handle.readline(MAX_HEADER_BYTES)
        if line == AEDAT_END_HEADER:
            return handle.tell()
        if not line.startswith(b"#") or handle.tell() > MAX_HEADER_BYTES:
            raise _corrupt(path, "AEDAT 3.1", "no '#!END-HEADER' line (CRLF) after the header")


def _check_aedat31_packets(path: Path) -> None:
    """Every packet header fits the file: spikingjelly reads ``capacity x size`` bytes."""
    total = _size(path, "AEDAT 3.1")
    with _opened(path, "AEDAT 3.1") as handle:
        offset = _aedat31_body(handle, path)
        while offset < total:
            raw = handle.read(PACKET_HEADER.size)
            if len(raw) < PACKET_HEADER.size:
                raise _corrupt(path, "AEDAT 3.1", f"a truncated packet header at byte {offset}")
            kind, _source, size, _ts_offset, overflow, capacity, _n, _valid = \
                PACKET_HEADER.unpack(raw)
            body = capacity * size
            if size < 1 or capacity < 0 or overflow < 0 or (
                    kind == POLARITY_EVENT and size != POLARITY_EVENT_SIZE) or \
                    offset + PACKET_HEADER.size + body > total:
                raise _corrupt(path, "AEDAT 3.1", f"the packet at byte {offset} (type {kind}, "
                               f"{capacity} events of {size} bytes) does not fit the file's "
                               f"{total} bytes")
            offset += PACKET_HEADER.size + body
            handle.seek(offset)


def read_aedat31(path: Path, sensor: tuple[int, int]) -> Events:
    """One DVS128 Gesture recording (AEDAT 3.1, polarity packets; others are skipped)."""
    _check_aedat31_packets(path)
    try:
        events = _spikingjelly_datasets().load_aedat_v3(str(path))
    except (struct.error, ValueError, OverflowError) as exc:
        raise _corrupt(path, "AEDAT 3.1", f"{type(exc).__name__}: {exc}") from None
    except OSError as exc:
        raise DataError(f"cannot read AEDAT 3.1 file {path}: {exc.strerror or exc}") from None
    events = {key: np.asarray(value, dtype=np.int64) for key, value in events.items()}
    return _on_sensor(path, "AEDAT 3.1", events, sensor)


def read_aedat2(path: Path, sensor: tuple[int, int]) -> Events:
    """One CIFAR10-DVS recording (jAER AEDAT 2.0, DVS128 addresses)."""
    from spikingjelly.datasets import cifar10_dvs

    total = _size(path, "AEDAT 2.0")
    with _opened(path, "AEDAT 2.0") as handle:
        first = handle.read(len(AEDAT2_MAGIC))
        if first != AEDAT2_MAGIC:
            raise _corrupt(path, "AEDAT 2.0", f"it starts with {first!r}, not {AEDAT2_MAGIC!r}")
        handle.seek(0)
        try:
            body = total - cifar10_dvs._skip_header(handle)
        except UnicodeDecodeError as exc:  # spikingjelly decodes the first line as UTF-8
            raise _corrupt(path, "AEDAT 2.0", f"its header line is not UTF-8 text ({exc.reason} "
                           f"at byte {exc.start})") from None
    if body % 8:
        raise _corrupt(path, "AEDAT 2.0", f"{body} bytes after the header is not a whole number "
                       "of 8-byte events")
    try:
        events = cifar10_dvs._load_origin_data(str(path))
    except ValueError as exc:
        raise _corrupt(path, "AEDAT 2.0", f"{type(exc).__name__}: {exc}") from None
    except OSError as exc:
        raise DataError(f"cannot read AEDAT 2.0 file {path}: {exc.strerror or exc}") from None
    events = {key: np.asarray(value, dtype=np.int64) for key, value in events.items()}
    return _on_sensor(path, "AEDAT 2.0", events, sensor)
