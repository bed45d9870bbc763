"""Writers of event-camera recordings in the formats the data sets' releases ship: N-MNIST
``.bin``, DVS128 Gesture AEDAT 3.1 (with its ``_labels.csv`` and trial lists) and CIFAR10-DVS
AEDAT 2.0. For data of your own in a layout neurokd reads, for tests and for benchmarks.

    >>> events = random_events(100, 34, 34, seed=0)
    >>> root = write_nmnist(Path(tmp), {("Train", 3): [events]})   # Train/3/00000.bin

Byte layouts (docs/data.md; the readers are spikingjelly's):

- N-MNIST ``.bin``: 5 bytes per event, ``x``, ``y``, ``p << 7 | t[22:16]``, ``t[15:8]``,
  ``t[7:0]`` (t: 23-bit microseconds).
- DVS128 Gesture AEDAT 3.1: ``#`` header lines ending in CRLF up to ``#!END-HEADER``, then
  packets: a 28-byte ``<hhiiiiii`` header (type 1 polarity / 0 special, source, event size 8,
  timestamp offset 4, timestamp overflow, capacity, number, valid) and ``<I data, <i t``
  events, data bit 0 valid, bit 1 polarity, bits 2..16 y, bits 17..31 x.
- CIFAR10-DVS AEDAT 2.0: ``#`` header lines, then big-endian ``>u4 address, >u4 t`` with the
  DVS128 address (bit 0 polarity, bits 1..7 x_raw, bits 8..14 y_raw); spikingjelly reads
  ``x = 127 - y_raw``, ``y = 127 - x_raw``, ``p = 1 - p_raw``, so these writers take the
  events as spikingjelly returns them and store the raw fields.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

AEDAT31_HEADER = ("#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n"
                  "#Start-Time: 2017-03-05 14:16:16 (TZ+0000)\r\n#!END-HEADER\r\n")
AEDAT2_HEADER = ("#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n"
                 "# Data format is int32 address, int32 timestamp (8 bytes total)\r\n"
                 "# Timestamps tick is 1 us\r\n")


def random_events(count: int, width: int, height: int, seed: int, t0: int = 0,
                  span: int = 100_000) -> dict[str, np.ndarray]:
    """``count`` events, strictly increasing timestamps, uniform positions and polarities."""
    rng = np.random.default_rng(seed)
    return {"t": np.sort(rng.choice(np.arange(t0, t0 + span), count, replace=False)),
            "x": rng.integers(0, width, count), "y": rng.integers(0, height, count),
            "p": rng.integers(0, 2, count)}


def nmnist_bytes(events: dict[str, np.ndarray]) -> bytes:
    x, y, t, p = (np.asarray(events[k], dtype=np.int64) for k in ("x", "y", "t", "p"))
    record = np.empty((x.size, 5), dtype=np.uint8)
    record[:, 0], record[:, 1] = x, y
    record[:, 2] = (p << 7) | ((t >> 16) & 0x7F)
    record[:, 3], record[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    return record.tobytes()


def write_nmnist(root: Path, samples: dict[tuple[str, int], list[dict]]) -> Path:
    """``root/Train|Test/<digit>/<i>.bin`` from ``{(split, digit): [events, ...]}``."""
    for (split, digit), streams in samples.items():
        folder = root / split / str(digit)
        folder.mkdir(parents=True, exist_ok=True)
        for i, events in enumerate(streams):
            (folder / f"{i:05d}.bin").write_bytes(nmnist_bytes(events))
    return root


def _packet(kind: int, payload: bytes, count: int, overflow: int = 0) -> bytes:
    return struct.pack("<hhiiiiii", kind, 1, 8, 4, overflow, count, count, count) + payload


def aedat31_bytes(events: dict[str, np.ndarray], per_packet: int = 16,
                  special_packet: bool = True) -> bytes:
    x, y, t, p = (np.asarray(events[k], dtype=np.uint64) for k in ("x", "y", "t", "p"))
    data = ((x << 17) | (y << 2) | (p << 1) | 1).astype("<u4")
    out = bytearray(AEDAT31_HEADER.encode("ascii"))
    if special_packet:  # a timestamp-reset event: readers must skip non-polarity packets
        out += _packet(0, struct.pack("<Ii", 3, int(t[0] & 0x7FFFFFFF)), 1)
    for start in range(0, x.size, per_packet):
        part = slice(start, start + per_packet)
        block = np.empty((t[part].size, 2), dtype="<u4")
        block[:, 0], block[:, 1] = data[part], (t[part] & 0x7FFFFFFF).astype("<u4")
        out += _packet(1, block.tobytes(), t[part].size, overflow=int(t[part][0] >> 31))
    return bytes(out)


def write_gesture(root: Path, recordings: dict[str, tuple[dict, list[tuple[int, int, int]]]],
                  train: list[str], test: list[str]) -> Path:
    """The unpacked DvsGesture.tar.gz: ``root/DvsGesture/`` with each recording's .aedat, its
    labels csv (class 1..11, start, end) and the two trial lists."""
    folder = root / "DvsGesture"
    folder.mkdir(parents=True, exist_ok=True)
    for name, (events, rows) in recordings.items():
        (folder / f"{name}.aedat").write_bytes(aedat31_bytes(events))
        lines = ["class,startTime_usec,endTime_usec"] + [f"{c},{s},{e}" for c, s, e in rows]
        (folder / f"{name}_labels.csv").write_text("\r\n".join(lines) + "\r\n")
    (folder / "trials_to_train.txt").write_text("".join(f"{n}.aedat\n" for n in train))
    (folder / "trials_to_test.txt").write_text("".join(f"{n}.aedat\n" for n in test))
    return root


def aedat2_bytes(events: dict[str, np.ndarray]) -> bytes:
    x, y, p = (np.asarray(events[k], dtype=np.uint32) for k in ("x", "y", "p"))
    x_raw, y_raw, p_raw = 127 - y, 127 - x, 1 - p
    record = np.empty((x.size, 2), dtype=">u4")
    record[:, 0] = (y_raw << 8) | (x_raw << 1) | p_raw
    record[:, 1] = np.asarray(events["t"], dtype=np.uint32)
    return AEDAT2_HEADER.encode("ascii") + record.tobytes()


def write_cifar10dvs(root: Path, samples: dict[str, list[dict]]) -> Path:
    """``root/<class>/cifar10_<class>_<i>.aedat`` from ``{class: [events, ...]}``."""
    for name, streams in samples.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, events in enumerate(streams):
            (root / name / f"cifar10_{name}_{i}.aedat").write_bytes(aedat2_bytes(events))
    return root
