"""digits-dvs: the generator is deterministic, its events look like a saccade recording with
sensor noise, its frames are the binned events, and a short distillation learns from them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from event_writers import binned

from neurokd.data import digits_dvs, load_data, make_loader

from helpers import run_cli

SOME = 300  # the statistics below hold on the first 300 digits as on all 1797


@pytest.fixture(scope="module")
def streams():
    return digits_dvs.generate(digits_dvs.SEED, SOME)


def test_generation_is_deterministic_for_a_seed(streams):
    fresh, labels = digits_dvs.generate.__wrapped__(digits_dvs.SEED, SOME)  # not the cache
    events, expected_labels = streams
    assert np.array_equal(labels, expected_labels)
    for a, b in zip(fresh, events, strict=True):
        for key in "txyp":
            assert np.array_equal(a[key], b[key])
    other, _ = digits_dvs.generate.__wrapped__(digits_dvs.SEED + 1, SOME)
    assert any(len(a["t"]) != len(b["t"]) for a, b in zip(other, events, strict=True))


def test_event_counts_and_stream_shape(streams):
    events, labels = streams
    counts = np.array([len(e["t"]) for e in events])
    assert len(events) == SOME and sorted(set(labels.tolist())) == list(range(10))
    assert counts.min() >= 1000 and counts.max() <= 3000, (counts.min(), counts.max())
    height, width = digits_dvs.SENSOR
    duration = digits_dvs.SACCADE_US * (len(digits_dvs.PATH) - 1)
    for e in events[::50]:
        assert (np.diff(e["t"]) >= 0).all() and e["t"].min() >= 0 and e["t"].max() < duration
        assert e["x"].max() < width and e["y"].max() < height
        assert 0.4 < e["p"].mean() < 0.6  # each edge passes a pixel both ways: ON and OFF


def test_only_noise_where_the_image_never_reaches(streams):
    """Column x = 0 lies in the margin at every position of the saccades: what fires there is
    the background activity, Poisson at NOISE_HZ per pixel and polarity."""
    events, _ = streams
    observed = sum(int((e["x"] == 0).sum()) for e in events)
    duration_s = digits_dvs.SACCADE_US * (len(digits_dvs.PATH) - 1) * 1e-6
    expected = len(events) * digits_dvs.SENSOR[0] * 2 * digits_dvs.NOISE_HZ * duration_s
    assert abs(observed - expected) < 5 * np.sqrt(expected), (observed, expected)


def test_signal_events_follow_the_three_saccades(streams):
    """Away from the margin, events come while the image moves: each 100 ms saccade brings
    a similar share of them."""
    events, _ = streams
    per_saccade = np.zeros(3)
    for e in events:
        inside = e["x"] > 0
        per_saccade += np.bincount(e["t"][inside] // digits_dvs.SACCADE_US, minlength=3)[:3]
    shares = per_saccade / per_saccade.sum()
    assert shares.min() > 0.2, shares


@pytest.mark.slow  # ONNX export / generation: seconds each, make test runs it
def test_frames_are_the_binned_events_on_digits_own_split():
    events, labels = digits_dvs.generate(digits_dvs.SEED)
    bundle = load_data("digits-dvs", timesteps=4, event_frames="counts")
    digits = load_data("digits")
    assert bundle.input_shape == (2, 20, 20) and len(bundle.test) == len(digits.test) == 360
    test_labels = np.array([bundle.test[i][1] for i in range(len(bundle.test))])
    assert np.array_equal(test_labels, digits.test.tensors[1].numpy())
    from neurokd.data.splits import stratified_split

    _, held = stratified_split(labels, 0.2)
    for k in (0, 123, 359):
        frames = bundle.test[k][0].numpy()
        np.testing.assert_array_equal(frames, binned(events[held[k]], 4, (20, 20)))
    binary = load_data("digits-dvs", timesteps=4)
    np.testing.assert_array_equal(binary.test[5][0].numpy(), np.minimum(bundle.test[5][0].numpy(), 1))
    x, _ = next(iter(make_loader(binary.test, 8)))
    assert tuple(x.shape) == (4, 8, 2, 20, 20) and set(x.unique().tolist()) <= {0.0, 1.0}


def test_the_teacher_sees_the_frames_averaged_over_time():
    from neurokd.config import RunConfig
    from neurokd.models import build_teacher

    config = RunConfig(dataset="digits-dvs").to_dict() | {"input_shape": [2, 20, 20],
                                                          "num_classes": 10}
    for arch in ("cnn", "twin", "resnet18"):
        teacher = build_teacher({**config, "teacher_arch": arch}).eval()
        frames = torch.randint(0, 2, (4, 3, 2, 20, 20)).float()
        with torch.no_grad():
            assert torch.allclose(teacher(frames), teacher(frames.mean(0)), atol=1e-6), arch


@pytest.mark.slow
def test_two_epochs_through_the_cli_beat_chance_widely(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outcome = run_cli(capsys, "distill", "--dataset", "digits-dvs", "--epochs", "2",
                      "--teacher-epochs", "2", "--name", "dvs", "--quiet")
    assert outcome.code == 0, outcome.err
    metrics = json.loads((tmp_path / "runs" / "dvs" / "metrics.json").read_text())
    assert metrics["dataset"] == "digits-dvs"
    assert metrics["student_accuracy"] > 0.5 and metrics["teacher_accuracy"] > 0.7, metrics
    config = (tmp_path / "runs" / "dvs" / "config.toml").read_text()
    assert 'dataset = "digits-dvs"' in config and "input_shape = [2, 20, 20]" in config
