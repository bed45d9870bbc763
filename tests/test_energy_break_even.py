"""Break-even input spike rates: measured on one input, they predict the rate at which a
constructed input makes the spiking layer cost exactly what the ANN layer costs."""

from __future__ import annotations

import math

import pytest
import torch
from spikingjelly.activation_based import layer, neuron
from torch import nn

from neurokd.energy import EnergyProfile, estimate, load_profile
from neurokd.student.sources import StudentSource

T, B = 4, 5


class DenseSnn(nn.Module):
    """Event input [T, B, 16] into one linear layer (no neurons after it)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = layer.Linear(16, 4, step_mode="m")

    def forward(self, x):
        return self.fc(x)


class ConvSnn(nn.Module):
    """Event input [T, B, 2, 6, 6] into a conv whose IF neurons never fire, so the neuron part
    is the same whatever comes in."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = layer.Conv2d(2, 3, 3, padding=1, step_mode="m")
        self.silent = neuron.IFNode(v_threshold=1e9, step_mode="m")

    def forward(self, x):
        return self.silent(self.conv(x))


class DenseAnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(x)


class ConvAnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x))


def spikes(shape: tuple[int, ...], count: int) -> torch.Tensor:
    """[T, B, *shape] with exactly ``count`` spikes, at seeded positions."""
    slots = T * B * math.prod(shape)
    x = torch.zeros(slots)
    x[torch.randperm(slots, generator=torch.Generator().manual_seed(count))[:count]] = 1.0
    return x.reshape(T, B, *shape)


def report(snn, ann, x, profile, model):
    source = StudentSource(snn, tuple(x.shape[2:]), T, "snn")
    return estimate(source, x, profile, ann=ann, energy_model=model)


def layer_pair(result, name):
    snn = next(row for row in result.layers if row.name == name)
    return snn, next(row for row in result.ann_layers if row.name == name)


@pytest.mark.parametrize("snn, ann, shape, name, model", [
    (DenseSnn, DenseAnn, (16,), "fc", "compute"),
    (DenseSnn, DenseAnn, (16,), "fc", "memory"),
    (ConvSnn, ConvAnn, (2, 6, 6), "conv", "memory"),
], ids=["dense-compute", "dense-memory", "conv-memory"])
def test_at_the_break_even_rate_the_layer_energies_are_equal(snn, ann, shape, name, model):
    snn, ann = snn().eval(), ann().eval()
    slots = T * B * math.prod(shape)
    balanced = slots * 3 // 10                      # the rate to balance at: 0.3
    x_balanced = spikes(shape, balanced)
    # Calibrate the profile (its MAC price: the ANN layer's only price the SNN layer does not
    # pay) so that the ANN layer costs what the SNN layer costs on that input.
    base = load_profile("lemaire-2022")
    first = report(snn, ann, x_balanced, base, model)
    snn_row, ann_row = layer_pair(first, name)
    mac_pj = base.costs["mac_pj"] + (snn_row.energy_pj - ann_row.energy_pj) \
        / ann_row.counts["macs"]
    assert mac_pj > 0
    tuned = EnergyProfile("tuned", {**base.costs, "mac_pj": mac_pj}, "test: calibrated MAC")
    # Measured on another input (twice the rate), the break-even rate is the balanced one ...
    busy = report(snn, ann, spikes(shape, 2 * balanced), tuned, model)
    busy_row, _ = layer_pair(busy, name)
    assert busy_row.input_event_rate == pytest.approx(0.6)
    assert busy.break_even(busy_row) == pytest.approx(balanced / slots, rel=1e-9)
    row_json = next(r for r in busy.to_dict()["layers"] if r["name"] == name)
    assert row_json["break_even_rate"] == pytest.approx(0.3, rel=1e-9)
    assert row_json["below_break_even"] is False
    assert busy_row.energy_pj > layer_pair(busy, name)[1].energy_pj
    # ... and at exactly that rate the two layers cost the same.
    at_rate = report(snn, ann, x_balanced, tuned, model)
    snn_row, ann_row = layer_pair(at_rate, name)
    assert snn_row.input_event_rate == balanced / slots
    assert snn_row.energy_pj == pytest.approx(ann_row.energy_pj, rel=1e-9)
    # One spike fewer: cheaper than the ANN layer; one more: dearer.
    for count, cheaper in ((balanced - 1, True), (balanced + 1, False)):
        result = report(snn, ann, spikes(shape, count), tuned, model)
        row = next(r for r in result.to_dict()["layers"] if r["name"] == name)
        assert row["below_break_even"] is cheaper
        snn_row, ann_row = layer_pair(result, name)
        assert (snn_row.energy_pj < ann_row.energy_pj) is cheaper


def test_no_break_even_for_analog_input_or_without_an_ann_layer():
    snn, ann = DenseSnn().eval(), DenseAnn().eval()
    analog = torch.rand(T, B, 16, generator=torch.Generator().manual_seed(1))
    result = report(snn, ann, analog, "45nm-fp32", "memory")
    assert result.layers[0].rate_line_pj is None and result.break_even(result.layers[0]) is None
    assert result.to_dict()["layers"][0]["break_even_rate"] is None
    alone = estimate(StudentSource(snn, (16,), T, "snn"), spikes((16,), 40), "45nm-fp32",
                     ann="none", energy_model="memory")
    assert alone.break_even(alone.layers[0]) is None


def test_a_silent_input_still_has_a_break_even_rate():
    """No spike came in: the line is priced with a uniform map, not divided by zero."""
    snn, ann = DenseSnn().eval(), DenseAnn().eval()
    result = report(snn, ann, spikes((16,), 0), "45nm-fp32", "compute")
    fc = result.layers[0]
    assert fc.input_event_rate == 0
    # compute model, dense layer: E(r) = r x 16 inputs x T x 4 outputs x synop_pj
    silent, per_rate = fc.rate_line_pj
    assert silent == 0 and per_rate == pytest.approx(16 * T * 4 * 0.9)
    ann_pj = 64 * 4.6
    assert result.break_even(fc) == pytest.approx(ann_pj / per_rate)
