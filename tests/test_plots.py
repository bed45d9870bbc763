"""The energy plot and the training-history plot, read back as matplotlib objects: titles,
axis scales and labels, the bar values and how an analog input is drawn."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
import torch
from spikingjelly.activation_based import layer, neuron
from torch import nn

from neurokd.cli.energy_render import energy_figure, energy_text, write_plot
from neurokd.cli.history_plot import history_figure, write_history_plot
from neurokd.energy import estimate
from neurokd.student.sources import StudentSource

from helpers import SHAPE, make_student


@pytest.fixture
def figures():
    """Close every figure a test made, whatever it asserted."""
    made = []
    yield made.append
    for figure in made:
        plt.close(figure)


def _bar_labels(axes) -> list[str]:
    return [text.get_text() for text in axes.texts]


def test_energy_plot_of_a_direct_encoded_student(figures):
    model, config = make_student(width=8, timesteps=3)
    source = StudentSource(model, SHAPE, 3, "student", config)
    x = torch.rand(6, *SHAPE)
    report = estimate(source, x, profile="45nm-int8", ann="twin",
                      inputs_label="digits test split (6 samples)")
    figure = energy_figure(report)
    figures(figure)
    title = figure._suptitle.get_text()
    assert "student (cnn width 8, tser)" in title and "digits test split (6 samples)" in title
    assert "profile 45nm-int8" in title and "T=3" in title
    ratio = sum(r.energy_pj for r in report.layers) / sum(a.energy_pj for a in report.ann_layers)
    assert f"SNN / ANN energy = {ratio:.3f}" in title
    energy_axes, rate_axes = figure.axes
    assert energy_axes.get_yscale() == "log"
    assert "energy per inference" in energy_axes.get_ylabel()
    labels = _bar_labels(energy_axes)
    # every SNN layer's bar carries its value, the smallest one too
    for row in report.layers:
        assert energy_text(row.energy_pj) in labels
    assert energy_text(report.snn_energy_pj) in labels
    assert energy_text(report.ann_energy_pj) in labels
    assert "rate" in rate_axes.get_ylabel()
    # the first conv sees analog pixels: hatched, labelled as not spikes, at its measured share
    first = report.layers[0]
    assert first.counts["macs"] > 0 and first.rate_line_pj is None
    hatched = [p for p in rate_axes.patches if p.get_hatch() and p.get_height() > 0]
    assert len(hatched) == 1
    assert hatched[0].get_height() == pytest.approx(first.input_event_rate)
    assert any("not spikes" in text for text in _bar_labels(rate_axes))
    legend = [t.get_text() for t in rate_axes.get_legend().get_texts()]
    assert any(t.startswith("analog input") for t in legend)


def test_energy_plot_names_the_ann_profile_and_states_the_verdict(figures):
    """loihi has no ANN: the ANN is priced under another profile, and the figure says so; the
    rate panel counts the layers below their break-even and marks each one."""
    model, config = make_student(width=8, timesteps=3)
    source = StudentSource(model, SHAPE, 3, "student", config)
    report = estimate(source, torch.rand(6, *SHAPE), profile="loihi", ann="twin")
    figure = energy_figure(report)
    figures(figure)
    assert report.ann_profile and report.ann_profile != "loihi"
    assert f"(the ANN priced under profile {report.ann_profile})" in figure._suptitle.get_text()
    rate_axes = figure.axes[1]
    # an independent count: a layer is cheaper when its input rate is below its break-even
    judged = [(layer.input_event_rate, report.break_even(layer)) for layer in report.layers
              if report.break_even(layer) is not None and layer.input_event_rate is not None]
    below = sum(rate < even for rate, even in judged)
    assert rate_axes.get_title().startswith(f"{below} of {len(judged)} spiking layers below")
    marks = [t for t in _bar_labels(rate_axes) if t in ("cheaper", "costlier")]
    assert marks.count("cheaper") == below and len(marks) == len(judged)
    tallest = max(patch.get_height() for patch in rate_axes.patches)  # the axis follows the data
    assert rate_axes.get_ylim()[1] == pytest.approx(max(tallest, 0.05) * 1.25 * 1.12)


class _SpikeInputNet(nn.Module):
    """conv 2->4 on event frames [T, B, 2, 6, 6], IF, linear -> 3, IF."""

    def __init__(self):
        super().__init__()
        self.conv = layer.Conv2d(2, 4, 3, padding=1, step_mode="m")
        self.if1 = neuron.IFNode(v_threshold=0.5, step_mode="m")
        self.flat = layer.Flatten(step_mode="m")
        self.fc = layer.Linear(4 * 36, 3, step_mode="m")
        self.if2 = neuron.IFNode(step_mode="m")

    def forward(self, x):
        return self.if2(self.fc(self.flat(self.if1(self.conv(x)))))


def test_energy_plot_of_event_input_draws_spike_rates(figures, tmp_path):
    torch.manual_seed(0)
    events = (torch.rand(4, 5, 2, 6, 6) < 0.2).float()
    source = StudentSource(_SpikeInputNet(), (2, 6, 6), 4, "events")
    report = estimate(source, events, profile="loihi")
    figure = energy_figure(report)
    figures(figure)
    assert "5 samples" in figure._suptitle.get_text()
    assert "no ANN reference" in figure._suptitle.get_text()
    rate_axes = figure.axes[1]
    assert not [p for p in rate_axes.patches if p.get_hatch()]  # spikes: no analog bar
    assert not any("not spikes" in text for text in _bar_labels(rate_axes))
    spike_bars = rate_axes.containers[0]
    assert spike_bars.get_label().startswith("input spike rate")
    # the first layer's bar is the share of input slots holding a spike, counted here again
    assert spike_bars[0].get_height() == pytest.approx(events.mean().item())
    path = write_plot(report, tmp_path / "e.png")
    assert plt.imread(path).shape[:2] == (640, 1400)


def _record(epoch: int, with_rates: bool) -> dict:
    record = {"epoch": epoch, "loss": 2.0 / epoch, "val_accuracy": 0.5 + 0.1 * epoch,
              "train_accuracy": 0.4 + 0.1 * epoch, "terms": {"ce": 1.0 / epoch, "kl": 0.5}}
    if with_rates:
        record |= {"firing_rate": 0.1, "layer_firing_rates": {"lif1": 0.05, "lif2": 0.15},
                   "lr": 1e-3 / epoch, "epoch_seconds": 2.5}
    return record


def test_history_plot_draws_each_quantity(figures):
    metrics = {"method": "tser", "dataset": "digits", "timesteps": 4,
               "student_accuracy": 0.975, "teacher_accuracy": 0.98,
               "history": [_record(e, True) for e in (1, 2, 3)],
               "teacher_history": [_record(e, False) for e in (1, 2)]}
    figure = history_figure("demo", metrics)
    figures(figure)
    assert figure._suptitle.get_text() == ("demo: tser on digits, T=4; test accuracy student "
                                           "97.50%, teacher 98.00%")
    loss, accuracy, rates, lr = figure.axes[:4]
    labels = {line.get_label(): list(line.get_ydata()) for line in loss.lines}
    assert labels["term ce"] == [1.0, 0.5, pytest.approx(1 / 3)]
    assert labels["teacher loss"] == [2.0, 1.0]
    assert {line.get_label() for line in accuracy.lines} == {
        "student train", "student val", "teacher train", "teacher val"}
    assert accuracy.get_ylabel() == "accuracy (%)"
    assert {line.get_label() for line in rates.lines} == {"all layers", "lif1", "lif2"}
    assert "spikes per neuron" in rates.get_ylabel()
    assert lr.get_ylabel() == "learning rate" and figure.axes[4].get_ylabel() == \
        "seconds per epoch"


def test_accuracy_axis_follows_where_the_run_settles_and_marks_the_kept_epoch(figures):
    """A 10-100% axis flattened the band where students differ: the floor is the lowest value
    after the first fifth of the epochs, less 2 points; earlier epochs below it are named."""
    val = [0.10, 0.60, 0.95, 0.97, 0.96, 0.98, 0.97, 0.96, 0.97, 0.97]
    train = [0.20, 0.70, 0.96, 0.98, 0.99, 0.99, 1.00, 1.00, 1.00, 1.00]
    history = [{"epoch": e, "loss": 1.0, "train_accuracy": t, "val_accuracy": v}
               for e, (t, v) in enumerate(zip(train, val, strict=True), start=1)]
    metrics = {"method": "kd", "dataset": "digits", "timesteps": 4, "student_accuracy": 0.97,
               "best_epoch": 6, "history": history}
    figure = history_figure("zoom", metrics)
    figures(figure)
    accuracy = figure.axes[1]
    late = [100 * x for x in val[2:] + train[2:]]   # epochs 3..10: after the first fifth (2)
    assert accuracy.get_ylim() == pytest.approx((min(late) - 2.0, 100.5))
    assert accuracy.get_title() == "accuracy (epochs 1-2 below the axis)"
    kept = [line for line in accuracy.lines if line.get_label().startswith("kept")]
    assert kept and kept[0].get_label() == "kept: epoch 6 (validation 98.00%)"
    assert list(kept[0].get_xdata()) == [6, 6]


def test_history_plot_says_what_an_older_history_lacks(figures, tmp_path):
    import json

    run = tmp_path / "old"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps(
        {"method": "ce", "dataset": "digits", "history": [_record(1, False), _record(2, False)]}))
    figure = history_figure("old", {"history": [_record(1, False)]})
    figures(figure)
    rates, lr = figure.axes[2:4]
    for axes in (rates, lr):
        assert "not recorded" in axes.texts[0].get_text() and axes.get_legend() is None
    timesteps = figure.axes[4]  # no epoch-time axis here: the accuracy-by-timestep panel
    assert "not recorded" in timesteps.texts[0].get_text() and timesteps.get_legend() is None
    assert write_history_plot(run) == run / "training.png"
    assert plt.imread(run / "training.png").shape[:2] == (1200, 1200)
