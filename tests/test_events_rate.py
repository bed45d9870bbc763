"""Rate encoding: Bernoulli spikes at the normalised intensity, a seeded transform of the data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurokd.data import load_data, make_loader
from neurokd.data.encoding import rate_spikes, sample_seed
from neurokd.errors import DataError


def _within(counts: np.ndarray, trials: np.ndarray, p: np.ndarray, sigmas: float = 5.0) -> None:
    """Binomial test per intensity level: |k/n - p| < 5 standard errors (fixed seeds: the
    outcome is the same every run), and a chi-square over all levels."""
    freq = counts / trials
    stderr = np.sqrt(np.maximum(p * (1 - p), 1e-12) / trials)
    assert (np.abs(freq - p) <= sigmas * stderr + 1e-12).all(), np.c_[p, freq, stderr]
    inner = (p > 0) & (p < 1)
    c, n, q = counts[inner], trials[inner], p[inner]
    chi2 = (((c - n * q) ** 2) / (n * q * (1 - q))).sum()
    from scipy.stats import chi2 as chi2_dist

    assert chi2_dist.sf(chi2, inner.sum()) > 1e-4, chi2


def test_spike_probability_equals_the_intensity():
    levels = torch.linspace(0, 1, 11)
    intensity = levels.repeat_interleave(500).reshape(11, 500)
    spikes = rate_spikes(intensity, 40, seed=1234)            # [T, 11, 500]
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    counts = spikes.sum((0, 2)).numpy()
    _within(counts, np.full(11, 40 * 500), levels.numpy().astype(np.float64))
    assert counts[0] == 0 and counts[-1] == 40 * 500           # 0 never fires, 1 always


def test_digits_spike_rate_follows_each_pixel_intensity():
    bundle = load_data("digits", encoding="rate", timesteps=8, seed=3)
    static = load_data("digits")
    x, _ = next(iter(make_loader(bundle.test, 360)))           # [T, 360, 1, 8, 8]
    assert tuple(x.shape) == (8, 360, 1, 8, 8) and bundle.time_major
    intensity = static.test.tensors[0].numpy()                  # 17 levels: k / 16
    level = np.rint(intensity * 16).astype(int).ravel()
    fired = x.sum(0).numpy().ravel()
    counts = np.bincount(level, weights=fired, minlength=17)
    trials = np.bincount(level, minlength=17) * 8
    seen = trials > 0
    _within(counts[seen], trials[seen], np.arange(17)[seen] / 16)


def test_rate_spikes_are_a_fixed_transform_of_each_sample():
    one = load_data("digits", encoding="rate", timesteps=4, seed=0)
    again = load_data("digits", encoding="rate", timesteps=4, seed=0)
    other = load_data("digits", encoding="rate", timesteps=4, seed=1)
    assert torch.equal(one.test[7][0], again.test[7][0])       # every run, export, simulation
    assert torch.equal(one.train[3][0], one.train[3][0])       # and every epoch
    assert not torch.equal(one.test[7][0], other.test[7][0])   # the run seed draws them
    assert sample_seed(0, "train", 5) != sample_seed(0, "test", 5) != sample_seed(0, "test", 6)
    assert one.test[7][1] == load_data("digits").test[7][1]


def test_cifar_intensity_is_the_raw_pixel(cifar10_dir):
    """CIFAR samples are normalised by mean and std; the spike probability is the pixel's
    intensity before that, value / 255."""
    bundle = load_data("cifar10", str(cifar10_dir), val_fraction=0.5, augment=False,
                       encoding="rate", timesteps=64, seed=0)
    from neurokd.data.cifar_pickle import CifarPickle

    raw = CifarPickle(cifar10_dir / "cifar-10-batches-py", "cifar10", train=False)
    x, _ = next(iter(make_loader(bundle.test, 20)))            # [64, 20, 3, 32, 32]
    pixels = np.stack([raw.data[i] for i in range(20)]).transpose(0, 3, 1, 2)   # uint8
    bins = pixels.ravel() // 32                                 # 8 intensity bins
    fired = x.sum(0).numpy().ravel()
    p = np.bincount(bins, weights=pixels.ravel() / 255.0) / np.bincount(bins)
    counts, trials = np.bincount(bins, weights=fired), np.bincount(bins) * 64
    assert np.abs(counts / trials - p).max() < 0.01, np.c_[p, counts / trials]


def test_rate_encoding_refuses_event_data_and_batch_augmentation():
    with pytest.raises(DataError, match="spikes already"):
        load_data("digits-dvs", encoding="rate", timesteps=4)
    with pytest.raises(DataError, match="drop --augment or --encoding rate"):
        load_data("mnist1d", augment=True, encoding="rate", timesteps=4)


def test_teacher_of_a_rate_student_sees_the_spike_rate():
    from neurokd.config import RunConfig
    from neurokd.models import build_student, build_teacher

    config = RunConfig(encoding="rate").to_dict() | {"input_shape": [1, 8, 8],
                                                     "num_classes": 10}
    teacher = build_teacher(config).eval()
    student = build_student(config).eval()
    spikes = rate_spikes(torch.rand(5, 1, 8, 8), 4, seed=0)     # [T, B, ...]
    with torch.no_grad():
        assert torch.allclose(teacher(spikes), teacher(spikes.mean(0)), atol=1e-6)
        assert tuple(student(spikes).shape) == (4, 5, 10)      # the student takes them as they are
