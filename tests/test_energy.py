"""Energy counts against numbers worked out by hand, by explicit loops and by op_counter; the
quantity registry, the profiles and the docs generated from them."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron
from spikingjelly.activation_based.op_counter import DispatchCounterMode, SynOpCounter
from torch import nn

from neurokd.data.encoding import DirectEncoding
from neurokd.energy import EnergyProfile, count_events, estimate, load_profile, price, synops
from neurokd.errors import ConfigError
from neurokd.student.geometry import LayerGeometry

from helpers import covering_outputs

# Costs chosen so every term shows up distinctly in a sum.
PRICES = EnergyProfile("test", {"mac_pj": 2.0, "synop_pj": 3.0, "neuron_update_pj": 5.0,
                                "active_neuron_update_pj": 7.0}, "test numbers")


class TwoLayerNet(nn.Module):
    """conv 1->2, 3x3, stride 2, padding 1 (4x4 -> 2x2), IF; linear 8->3, IF."""

    def __init__(self):
        super().__init__()
        self.conv = layer.Conv2d(1, 2, 3, stride=2, padding=1, bias=False, step_mode="m")
        self.if1 = neuron.IFNode(v_threshold=1.0, v_reset=0.0, step_mode="m")
        self.flat = layer.Flatten(step_mode="m")
        self.fc = layer.Linear(8, 3, bias=False, step_mode="m")
        self.if2 = neuron.IFNode(v_threshold=1.0, v_reset=0.0, step_mode="m")
        with torch.no_grad():
            self.conv.weight.fill_(1.0)  # an output fires iff a spike is in its window
            self.fc.weight.zero_()       # the last layer never fires

    def forward(self, x):
        return self.if2(self.fc(self.flat(self.if1(self.conv(x)))))


def _spike_input() -> torch.Tensor:
    x = torch.zeros(2, 1, 1, 4, 4)  # [T, B, C, H, W]
    x[0, 0, 0, 0, 0] = 1
    x[1, 0, 0, 1, 1] = 1
    x[1, 0, 0, 3, 3] = 1
    return x


def test_hand_built_net_spikes_in():
    counts = count_events(TwoLayerNet(), [_spike_input()], input_shape=(1, 4, 4))
    conv, fc = price(counts, PRICES)
    assert (counts.samples, counts.timesteps) == (1, 2)
    # Output row o of the stride-2, pad-1 conv reads input rows 2o-1..2o+1: rows {-1,0,1} and
    # {1,2,3}. So input row 0 feeds 1 output row, row 1 feeds 2, rows 2 and 3 feed 1 (columns
    # alike), times 2 output channels.
    reach = [1, 2, 1, 1]
    fan_out = {(r, c): reach[r] * reach[c] * 2 for r in range(4) for c in range(4)}
    assert conv.counts["synops"] == fan_out[0, 0] + fan_out[1, 1] + fan_out[3, 3] == 12
    assert conv.counts["macs"] == 0
    assert conv.input_event_rate == pytest.approx(3 / (2 * 16))
    # t=0: only output (0,0) sees a spike -> 2 spikes; t=1: (1,1) lies in all four windows.
    assert conv.counts["active_neuron_updates"] == 2 + 8
    assert conv.counts["neuron_updates"] == 8 * 2
    assert conv.output_firing_rate == pytest.approx(10 / 16)
    assert fc.input_event_rate == pytest.approx(10 / 16)
    assert fc.counts["synops"] == 10 * 3
    assert fc.counts["neuron_updates"] == 3 * 2 and fc.counts["active_neuron_updates"] == 0
    # Energy = counts x profile: the 10 active updates at 7 pJ, the other 6 at 5 pJ.
    assert conv.group_energy_pj == pytest.approx({"synop": 12 * 3, "mac": 0,
                                                  "neuron": (16 - 10) * 5 + 10 * 7})
    assert conv.energy_pj == pytest.approx(12 * 3 + (16 - 10) * 5 + 10 * 7)
    assert fc.energy_pj == pytest.approx(30 * 3 + 6 * 5)


def test_hand_built_net_analog_in_counts_macs_and_the_twin():
    model = DirectEncoding(TwoLayerNet(), (1, 4, 4), 2)
    x = torch.full((3, 1, 4, 4), 0.25)  # analog, below threshold alone
    model.train()
    result = estimate(model, x, PRICES, ann="twin")
    assert all(m.training for m in model.modules())  # counted in eval mode, mode given back
    conv, fc = result.layers
    # Analog input: fan-in (1*3*3) x outputs (2*2*2) per timestep, two timesteps.
    assert conv.counts["macs"] == 9 * 8 * 2 and conv.counts["synops"] == 0
    assert conv.input_event_rate == 1.0
    # The ReLU twin: the same fan-in x outputs, once, plus the linear's 8 x 3.
    assert [(a.name, a.counts) for a in result.ann_layers] == [("conv", {"macs": 72}),
                                                                ("fc", {"macs": 24})]
    assert result.ann_energy_pj == pytest.approx((72 + 24) * 2.0)
    assert result.ratio == pytest.approx(result.snn_energy_pj / result.ann_energy_pj)
    assert conv.counts["active_neuron_updates"] > 0
    # every conv spike x 3 fan-out
    assert fc.counts["synops"] == conv.counts["active_neuron_updates"] * 3


@pytest.mark.parametrize("kernel,stride,pad,dilation,groups", [
    (3, 1, 1, 1, 1), (3, 2, 1, 1, 1), (5, 2, 2, 1, 2), (3, 3, 0, 2, 4), ((1, 3), 1, (0, 1), 1, 1),
])
def test_conv_synops_equal_loops_and_op_counter(kernel, stride, pad, dilation, groups):
    generator = torch.Generator().manual_seed(7)
    conv = nn.Conv2d(4, 8, kernel, stride, pad, dilation, groups, bias=False)
    spikes = (torch.rand(3, 2, 4, 7, 9, generator=generator) < 0.3).float()  # [T, B, C, H, W]
    geometry = LayerGeometry.of_module("conv", conv, (4, 7, 9))
    events = spikes.sum((0, 1)).numpy()
    ours = synops(events, geometry)
    kh, kw = geometry.kernel
    rows = covering_outputs(7, kh, geometry.stride[0], geometry.padding[0], geometry.dilation[0])
    cols = covering_outputs(9, kw, geometry.stride[1], geometry.padding[1], geometry.dilation[1])
    by_hand = sum(events[c, r, q] * rows[r] * cols[q] * (8 // groups)
                  for c, r, q in itertools.product(range(4), range(7), range(9)))
    counter = SynOpCounter()
    with DispatchCounterMode([counter]), torch.no_grad():
        conv(spikes.flatten(0, 1))
    assert ours == by_hand == counter.get_total()


def test_student_counts_equal_op_counter_and_teacher_macs_by_formula(trained_run):
    import neurokd
    from neurokd.data import load_data

    run = neurokd.load(trained_run / "student.pt")
    x = load_data("digits").test.tensors[0][:100]
    result = estimate(trained_run / "student.pt", x, "45nm-fp32")
    counter = SynOpCounter()
    with DispatchCounterMode([counter]), torch.no_grad():
        functional.reset_net(run.student)
        run.student(x)
    expected = {name.split(".", 1)[1]: sum(ops.values()) / 100
                for name, ops in counter.get_counts().items() if name.count(".") == 2}
    for row in result.layers:
        assert row.counts["synops"] == pytest.approx(expected[row.name], abs=1e-9), row.name
    assert result.layers[0].counts["macs"] == 9 * 16 * 64 * 4  # 1->16 3x3 conv on 8x8, T=4
    # Teacher cnn (width 32) on 1x8x8: fan-in x outputs per conv/linear.
    teacher = [9 * 32 * 8 * 8, 32 * 9 * 64 * 4 * 4, 64 * 9 * 64 * 2 * 2, 64 * 2 * 2 * 10]
    assert [a.counts["macs"] for a in result.ann_layers] == teacher
    assert result.ann_energy_pj == pytest.approx(sum(teacher) * 4.6)
    assert result.profile.source.startswith("Horowitz")


def test_profiles_and_their_validation(tmp_path):
    assert load_profile("45nm-fp32").costs["mac_pj"] == 4.6
    assert load_profile("45nm-int8").costs["mac_pj"] == 0.23
    loihi = load_profile("loihi").costs
    assert (loihi["synop_pj"], loihi["neuron_update_pj"], loihi["active_neuron_update_pj"]) \
        == (23.6, 52, 81)
    good = tmp_path / "chip.toml"
    good.write_text('name = "chip"\nmac_pj = 1\nsynop_pj = 0.5\nneuron_update_pj = 0\n'
                    'active_neuron_update_pj = 0.1\nsource = "datasheet"\n')
    chip = load_profile(good)
    assert chip.costs["synop_pj"] == 0.5 and chip.to_dict()["name"] == "chip"
    cases = [("45nm-fp23", "did you mean '45nm-fp32'"),
             ("mac_pjj = 1", "did you mean 'mac_pj'"),
             ('name = "x"\nmac_pj = 1\n', "lacks source"),
             (good.read_text().replace("mac_pj = 1", "mac_pj = -1"), "mac_pj must be"),
             (good.read_text().replace("mac_pj = 1", 'mac_pj = "1"'), "mac_pj must be"),
             ("mac_pj = [1,\n", "malformed TOML")]
    for text, message in cases:
        spec = text
        if "=" in text:
            spec = tmp_path / "p.toml"
            spec.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_profile(spec)
    with pytest.raises(ConfigError, match="unknown cost key 'synop'"):
        EnergyProfile("x", {"synop": 1.0}, "typo")


def test_a_profile_lacking_a_cost_loads_and_is_refused_only_where_it_is_needed(tmp_path):
    """A missing key means "not priced here": the compute model refuses the profile naming
    the keys; a missing active-update cost falls back to the plain update cost."""
    partial = tmp_path / "partial.toml"
    partial.write_text('name = "partial"\nmac_pj = 2\nsource = "a test"\n')
    profile = load_profile(partial)
    assert dict(profile.costs) == {"mac_pj": 2.0}
    counts = count_events(TwoLayerNet(), [_spike_input()], input_shape=(1, 4, 4))
    with pytest.raises(ConfigError, match="partial.toml: energy profile 'partial' lacks "
                       "synop_pj, neuron_update_pj: the compute energy model"):
        price(counts, profile)
    no_active = {k: v for k, v in PRICES.costs.items() if k != "active_neuron_update_pj"}
    conv, fc = price(counts, EnergyProfile("plain", no_active, "a test"))
    assert conv.group_energy_pj["neuron"] == pytest.approx(16 * 5)  # all 16 updates at 5 pJ
    assert conv.energy_pj == pytest.approx(12 * 3 + 16 * 5)


def test_neuron_counts_per_timestep_for_a_two_sample_batch():
    # Two samples, the second silent: per inference halves every count of the first.
    x = torch.cat([_spike_input(), torch.zeros_like(_spike_input())], dim=1)
    conv, fc = price(count_events(TwoLayerNet(), [x], input_shape=(1, 4, 4)), PRICES)
    assert conv.counts == {"synops": 6, "macs": 0, "neuron_updates": 16,
                           "active_neuron_updates": 5}
    assert np.isclose(conv.input_event_rate, 3 / (2 * 2 * 16))


def test_conv1d_synops_equal_op_counter():
    conv = nn.Conv1d(3, 5, 3, stride=2, padding=1, bias=False)
    spikes = (torch.rand(4, 3, 11, generator=torch.Generator().manual_seed(3)) < 0.4).float()
    geometry = LayerGeometry.of_module("c", conv, (3, 11))
    assert geometry.input_shape == (3, 1, 11) and geometry.output_shape == (5, 1, 6)
    counter = SynOpCounter()
    with DispatchCounterMode([counter]), torch.no_grad():
        conv(spikes)
    reach = covering_outputs(11, 3, 2, 1, 1)
    by_hand = sum(float(spikes[:, c, i].sum()) * reach[i] * 5 for c in range(3) for i in range(11))
    assert synops(spikes.sum(0).numpy(), geometry) == by_hand == counter.get_total()


def test_ann_macs_do_not_depend_on_values_unlike_op_counter():
    """Why the ANN reference is not op_counter's MACCounter: an ANN layer whose input holds only
    0/1 values (a binarised image) still multiplies, but MACCounter then counts 0."""
    from spikingjelly.activation_based.op_counter import MACCounter

    from neurokd.energy.ann import ann_macs

    ann = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 6 * 6, 2))
    binary_image = (torch.rand(1, 1, 6, 6, generator=torch.Generator().manual_seed(0)) < 0.5)
    counter = MACCounter()
    with DispatchCounterMode([counter]), torch.no_grad():
        ann(binary_image.float())
    first_conv = {k: v for k, v in counter.get_counts().items() if k.endswith(".0")}
    assert sum(first_conv["Sequential.0"].values()) == 0  # op_counter: "spikes", no MACs
    assert ann_macs(ann, binary_image.float()) == [("0", 9 * 4 * 36), ("3", 144 * 2)]


def test_registry_is_consistent():
    from neurokd.energy import COSTS, ENERGY_MODELS, PROFILES, QUANTITIES
    from neurokd.energy.memory import BUFFERS, SRAM_POINTS, WORDS
    from neurokd.energy.quantities import PARTS, SRAM

    cost_keys = [cost.key for cost in COSTS]
    names = [q.name for q in QUANTITIES]
    assert len(set(names)) == len(names) and len(set(cost_keys)) == len(cost_keys)
    assert {key for _, key in SRAM_POINTS} <= set(cost_keys)
    for quantity in QUANTITIES:
        assert quantity.model in ENERGY_MODELS and quantity.part in PARTS
        assert quantity.subset_of in (None, *names)
        # a memory access is priced by the SRAM curve, everything else by one cost key
        if quantity.access is None:
            assert quantity.cost in cost_keys
        else:
            assert quantity.cost == SRAM and quantity.access.word in WORDS
            assert quantity.access.buffer in BUFFERS
    # one group, one part: the per-layer split compute / addressing / memory adds up
    part_of = {}
    for quantity in QUANTITIES:
        assert part_of.setdefault(quantity.group, quantity.part) == quantity.part
    assert all(cost.fallback in (None, *cost_keys) for cost in COSTS)
    for model in ENERGY_MODELS.values():  # a replacement is the model's own, of another name
        for old, new in model.replaces:
            assert old in names and new in {q.name for q in model.quantities}
            assert old not in {q.name for q in model.quantities}
    for profile in PROFILES.values():  # every built-in profile prices every model
        assert set(profile.cost_sources) == set(profile.costs)  # a source for each cost
        for model in ENERGY_MODELS.values():
            priced = model.unit_costs(profile.costs, profile.name, profile.file)
            assert set(priced) == {q.name for q in model.quantities if q.access is None}
        assert profile.ann_profile in (None, *PROFILES)


def test_a_new_quantity_reaches_table_json_and_totals(monkeypatch, capsys):
    """What "adding a quantity touches the counter and the registry line only" means: a made-up
    quantity (output spikes, priced per synaptic op) shows up as a table column, a JSON key,
    a total and an energy group without any other change."""
    from neurokd.cli.energy_render import print_report
    from neurokd.energy import quantities
    from neurokd.energy.pricing import EnergyReport

    spikes = quantities.Quantity("output_spikes", "spikes out", "synop_pj", "spike",
                                 lambda layer: layer.active_neuron_updates, "test")
    monkeypatch.setattr(quantities, "QUANTITIES", (*quantities.QUANTITIES, spikes))
    counts = count_events(TwoLayerNet(), [_spike_input()], input_shape=(1, 4, 4))
    conv, fc = price(counts, PRICES)
    row = conv.to_dict()
    assert row["output_spikes"] == 10 and row["spike_energy_pj"] == 10 * 3
    assert row["energy_pj"] == pytest.approx(12 * 3 + 6 * 5 + 10 * 7 + 10 * 3)
    result = EnergyReport(PRICES, "net", "1 sample", 1, 2, [conv, fc])
    assert result.totals()["output_spikes"] == 10
    assert result.totals()["spike_energy_pj"] == 30
    print_report(result)
    assert "spikes out" in capsys.readouterr().out


def test_energy_package_names_do_not_hide_its_submodules():
    import pkgutil

    import neurokd.energy as energy

    submodules = {info.name for info in pkgutil.iter_modules(energy.__path__)}
    assert submodules >= {"count", "quantities", "profiles", "pricing", "estimation"}
    assert not submodules & set(energy.__all__)
