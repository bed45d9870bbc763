"""The event data sets read from tiny files in the releases' formats: events read back
exactly, frames equal to an independent binning, layouts, corrupt files and the frames cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from event_writers import (
    aedat2_bytes,
    aedat31_bytes,
    binned,
    nmnist_bytes,
    random_events,
    write_cifar10dvs,
    write_gesture,
    write_nmnist,
)

from neurokd.data import load_data, make_loader
from neurokd.data.event_files import read_aedat2, read_aedat31, read_nmnist
from neurokd.data.event_sets import CIFAR10_CLASSES, EVENT_SETS
from neurokd.errors import ConfigError, DataError

T = 3


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    folder = tmp_path / "cache"
    folder.mkdir()
    return folder


def _nmnist_samples() -> dict:
    return {(split, digit): [random_events(30 + 7 * digit + k, 34, 34, seed=100 * digit + k)
                             for k in range(2 if split == "Train" else 1)]
            for split in ("Train", "Test") for digit in range(10)}


def _frames(dataset) -> tuple[np.ndarray, np.ndarray]:
    x, y = zip(*(dataset[i] for i in range(len(dataset))), strict=True)
    return torch.stack(x).numpy(), np.array(y)


@pytest.mark.parametrize("reader, encode, sensor", [
    (read_nmnist, nmnist_bytes, (34, 34)),
    (read_aedat31, aedat31_bytes, (128, 128)),
    (read_aedat2, aedat2_bytes, (128, 128)),
])
def test_each_reader_gives_back_the_written_events(tmp_path, reader, encode, sensor):
    events = random_events(200, sensor[1], sensor[0], seed=3, t0=2**23 - 200_000 if
                           reader is read_nmnist else 10**9, span=199_999)
    path = tmp_path / "sample.bin"
    path.write_bytes(encode(events))
    got = reader(path, sensor)
    for key in ("t", "x", "y", "p"):
        np.testing.assert_array_equal(got[key], events[key], err_msg=key)


def test_nmnist_frames_match_an_independent_binning(tmp_path, cache):
    samples = _nmnist_samples()
    root = write_nmnist(tmp_path / "nmnist", samples)
    for kind in ("counts", "binary"):
        bundle = load_data("nmnist", str(root), val_fraction=0.5, timesteps=T,
                           event_frames=kind, cache_dir=cache)
        assert bundle.input_shape == (2, 34, 34) and bundle.time_major
        x, y = _frames(bundle.test)
        expected = np.stack([binned(samples[("Test", d)][0], T, (34, 34)) for d in range(10)])
        np.testing.assert_array_equal(x, expected if kind == "counts" else np.minimum(expected, 1))
        assert y.tolist() == list(range(10))
        assert len(bundle.train) + len(bundle.val) == 20
    assert len(list(cache.iterdir())) == 1  # one cache for both frame kinds
    assert sorted(p.name for p in root.rglob("*")) == sorted(
        p.name for p in (tmp_path / "nmnist").rglob("*"))  # nothing written beside the data


def test_event_size_bins_coordinates_down(tmp_path, cache):
    samples = _nmnist_samples()
    root = write_nmnist(tmp_path / "nmnist", samples)
    bundle = load_data("nmnist", str(root), val_fraction=0.5, timesteps=T, event_size=17,
                       event_frames="counts", cache_dir=cache)
    assert bundle.input_shape == (2, 17, 17)
    x, _ = _frames(bundle.test)
    expected = np.stack([binned(samples[("Test", d)][0], T, (34, 34), 2) for d in range(10)])
    np.testing.assert_array_equal(x, expected)
    full = load_data("nmnist", str(root), val_fraction=0.5, timesteps=T, event_frames="counts",
                     cache_dir=cache)
    pooled = _frames(full.test)[0].reshape(10, T, 2, 17, 2, 17, 2).sum((4, 6))
    np.testing.assert_array_equal(x, pooled)  # = 2x2 sum pooling of the full frames


GESTURE_USERS = ("user01_fluorescent", "user02_led", "user24_natural")


def _gesture_recordings() -> dict:
    recordings = {}
    for u, name in enumerate(GESTURE_USERS):
        base = 1_000_000 * (u + 1)
        events = random_events(2000, 128, 128, seed=u, t0=base, span=1_200_000)
        rows = [(c, base + 100_000 * c, base + 100_000 * c + 80_000) for c in range(1, 12)]
        recordings[name] = (events, rows)
    return recordings


def test_gesture_samples_are_the_label_windows(tmp_path, cache):
    recordings = _gesture_recordings()
    root = write_gesture(tmp_path / "gesture", recordings, list(GESTURE_USERS[:2]),
                         [GESTURE_USERS[2]])
    bundle = load_data("dvsgesture", str(root), val_fraction=0.5, timesteps=T, event_frames="counts",
                       cache_dir=cache)
    x, y = _frames(bundle.test)
    events, rows = recordings[GESTURE_USERS[2]]
    assert y.tolist() == [c - 1 for c, _, _ in rows]  # classes 1..11 -> labels 0..10
    for frames, (_, start, end) in zip(x, rows, strict=True):
        keep = (events["t"] >= start) & (events["t"] < end)
        window = {k: v[keep] for k, v in events.items()}
        np.testing.assert_array_equal(frames, binned(window, T, (128, 128)))
    assert bundle.class_names[10] == "other gestures" and bundle.num_classes == 11


def test_cifar10dvs_split_and_frames(tmp_path, cache):
    samples = {c: [random_events(40 + i, 128, 128, seed=10 * k + i) for i in range(3)]
               for k, c in enumerate(CIFAR10_CLASSES)}
    root = write_cifar10dvs(tmp_path / "cifar10dvs", samples)
    bundle = load_data("cifar10dvs", str(root), val_fraction=0.5, timesteps=T, event_size=64,
                       event_frames="counts", cache_dir=cache)
    x, y = _frames(bundle.test)  # the first recording of each class: the test split
    assert y.tolist() == list(range(10)) and len(bundle.train) + len(bundle.val) == 20
    for frames, c in zip(x, CIFAR10_CLASSES, strict=True):
        np.testing.assert_array_equal(frames, binned(samples[c][0], T, (128, 128), 2))


def test_loaders_batch_time_major(tmp_path, cache):
    root = write_nmnist(tmp_path / "nmnist", _nmnist_samples())
    bundle = load_data("nmnist", str(root), val_fraction=0.5, timesteps=T, cache_dir=cache)
    x, y = next(iter(make_loader(bundle.test, 4)))
    assert tuple(x.shape) == (T, 4, 2, 34, 34) and tuple(y.shape) == (4,)
    np.testing.assert_array_equal(x[:, 1].numpy(), bundle.test[1][0].numpy())


def test_the_cache_is_reused_not_rebuilt(tmp_path, cache, monkeypatch):
    root = write_nmnist(tmp_path / "nmnist", _nmnist_samples())
    first = _frames(load_data("nmnist", str(root), val_fraction=0.5, timesteps=T, cache_dir=cache).test)[0]

    def no_binning(*args, **kwargs):
        raise AssertionError("the cache was rebuilt")

    monkeypatch.setattr("neurokd.data.events.bin_events", no_binning)
    again = _frames(load_data("nmnist", str(root), val_fraction=0.5, timesteps=T, cache_dir=cache).test)[0]
    np.testing.assert_array_equal(first, again)
    (root / "Test" / "3" / "00000.bin").write_bytes(nmnist_bytes(random_events(9, 34, 34, 1)))
    with pytest.raises(AssertionError, match="rebuilt"):  # a changed file: a new cache
        load_data("nmnist", str(root), val_fraction=0.5, timesteps=T, cache_dir=cache)


def test_a_failed_build_leaves_nothing(tmp_path, cache):
    root = write_nmnist(tmp_path / "nmnist", _nmnist_samples())
    bad = root / "Test" / "9" / "00000.bin"
    bad.write_bytes(bad.read_bytes()[:-2])
    with pytest.raises(DataError, match=f"corrupt N-MNIST file {bad}"):
        load_data("nmnist", str(root), val_fraction=0.5, timesteps=T, cache_dir=cache)
    assert list(cache.iterdir()) == []


def _nmnist_file(damage):
    return damage(nmnist_bytes(random_events(20, 34, 34, 0))), read_nmnist, (34, 34)


def _aedat31_file(damage):
    return damage(aedat31_bytes(random_events(64, 128, 128, 0))), read_aedat31, (128, 128)


def _aedat2_file(damage):
    return damage(aedat2_bytes(random_events(10, 128, 128, 0))), read_aedat2, (128, 128)


LAST_PACKET = 16 * 8 + 28  # the last 16 events and their packet header


@pytest.mark.parametrize("make, damage, message", [
    (_nmnist_file, lambda b: b[:-3], "not a whole number of 5-byte events"),
    (_nmnist_file, lambda b: bytes([40]) + b[1:], "outside the 34x34 sensor"),
    (_aedat31_file, lambda b: b.replace(b"#!END-HEADER\r\n", b"#!END-HEADER\n"),
     "no '#!END-HEADER'"),
    (_aedat31_file, lambda b: b[:-5], "does not fit the file"),
    (_aedat31_file, lambda b: b"garbage" + b, "not b'#!AER-DAT3.1'"),
    (_aedat31_file, lambda b: b[:-LAST_PACKET] + b[-LAST_PACKET:].replace(  # capacity 2**31-1
        b"\x10\x00\x00\x00", b"\xff\xff\xff\x7f", 1), "does not fit the file"),
    (_aedat2_file, lambda b: b[:-4], "not a whole number of 8-byte events"),
], ids=["nmnist-truncated", "nmnist-off-sensor", "aedat31-lf-header", "aedat31-truncated",
        "aedat31-no-magic", "aedat31-huge-capacity", "aedat2-truncated"])
def test_a_corrupt_event_file_is_named(tmp_path, make, damage, message):
    data, reader, sensor = make(damage)
    path = tmp_path / "recording.bin"
    path.write_bytes(data)
    with pytest.raises(DataError, match=message) as info:
        reader(path, sensor)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name, make, message", [
    ("nmnist", lambda root: (root / "Test").mkdir(parents=True), "no folder"),
    ("nmnist", lambda root: [(root / s / "0").mkdir(parents=True) for s in ("Train", "Test")],
     "no class folder"),
    ("dvsgesture", lambda root: root.mkdir(), "trials_to_train.txt"),
    ("cifar10dvs", lambda root: (root / "airplane").mkdir(parents=True), "automobile"),
])
def test_a_wrong_layout_names_the_path_and_the_expected_one(tmp_path, cache, name, make,
                                                            message):
    root = tmp_path / "data"
    make(root)
    with pytest.raises(DataError, match=message) as info:
        load_data(name, str(root), val_fraction=0.5, timesteps=T, cache_dir=cache)
    assert str(root) in str(info.value) and "expected" in str(info.value)
    assert EVENT_SETS[name].layout in str(info.value)


def test_a_damaged_cache_file_is_named(tmp_path, cache):
    root = write_nmnist(tmp_path / "nmnist", _nmnist_samples())
    load_data("nmnist", str(root), val_fraction=0.5, timesteps=T, cache_dir=cache)
    frames = next(cache.iterdir()) / "test.frames.npy"
    frames.write_bytes(frames.read_bytes()[:-10])
    with pytest.raises(DataError, match=f"frames cache file {frames} is damaged"):
        load_data("nmnist", str(root), val_fraction=0.5, timesteps=T, cache_dir=cache)


def test_cache_dir_must_exist(tmp_path):
    with pytest.raises(DataError, match="is not a folder"):
        load_data("digits-dvs", timesteps=T, cache_dir=tmp_path / "nowhere")


def test_event_size_must_divide_the_sensor():
    from neurokd.config import RunConfig

    with pytest.raises(ConfigError, match=r"34x34 sensor of nmnist evenly \(34, 17, 2, 1\)"):
        RunConfig(dataset="nmnist", data_dir="x", event_size=16)


def test_a_full_disk_while_caching_is_a_write_error_and_leaves_nothing(tmp_path, cache,
                                                                      monkeypatch):
    import errno
    import os

    from neurokd.errors import WriteError

    root = write_nmnist(tmp_path / "nmnist", _nmnist_samples())

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("neurokd.data.frames.np.save", full)
    with pytest.raises(WriteError, match="No space left on device") as info:
        load_data("nmnist", str(root), val_fraction=0.5, timesteps=T, cache_dir=cache)
    assert info.value.exit_code == 1 and list(cache.iterdir()) == []
