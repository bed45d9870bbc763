"""What the reader tests need beyond the format writers (``neurokd.data.event_writers``): an
independent binning to check the frames against, and releases with one damaged file each."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neurokd.data.event_writers import (  # noqa: F401 - the tests import the writers from here
    AEDAT2_HEADER,
    AEDAT31_HEADER,
    aedat2_bytes,
    aedat31_bytes,
    nmnist_bytes,
    random_events,
    write_cifar10dvs,
    write_gesture,
    write_nmnist,
)


def binned(events: dict[str, np.ndarray], timesteps: int, size: tuple[int, int],
           factor: int = 1) -> np.ndarray:
    """Independent binning, with explicit loops: ``[T, 2, H, W]`` counts, event ``i`` of ``N``
    in frame ``min(i // (N // T), T - 1)`` (the last frame takes the remainder)."""
    count = len(events["t"])
    frames = np.zeros((timesteps, 2, size[0] // factor, size[1] // factor))
    per_frame = count // timesteps
    for i in range(count):
        frame = timesteps - 1 if per_frame == 0 else min(i // per_frame, timesteps - 1)
        p, y, x = int(events["p"][i]), int(events["y"][i]) // factor, int(events["x"][i]) // factor
        frames[frame, p, y, x] += 1
    return frames


def write_corrupt_event_sets(folder: Path) -> None:
    """Releases of the three event sets, complete but for one damaged file each (the bad-input
    table): ``nmnist_corrupt`` (a truncated .bin), ``gesture_corrupt`` (a truncated AEDAT 3.1
    packet) and ``cifar10dvs_corrupt`` (an AEDAT 2.0 body of odd length)."""
    samples = {(split, d): [random_events(12, 34, 34, seed=d)] for split in ("Train", "Test")
               for d in range(10)}
    root = write_nmnist(folder / "nmnist_corrupt", samples)
    bad = root / "Train" / "0" / "00000.bin"
    bad.write_bytes(bad.read_bytes()[:-1])
    rows = [(c, 1000 * c, 1000 * c + 500) for c in range(1, 12)]
    events = random_events(64, 128, 128, seed=1, t0=0, span=12_000)
    root = write_gesture(folder / "gesture_corrupt", {"user01_led": (events, rows)},
                         ["user01_led"], ["user01_led"])
    bad = root / "DvsGesture" / "user01_led.aedat"
    bad.write_bytes(bad.read_bytes()[:-3])
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck")
    root = write_cifar10dvs(folder / "cifar10dvs_corrupt",
                            {c: [random_events(8, 128, 128, seed=i + k) for k in (0, 1)]
                             for i, c in enumerate(classes)})
    bad = root / "airplane" / "cifar10_airplane_1.aedat"   # index 1: a training recording
    bad.write_bytes(bad.read_bytes()[:-4])
