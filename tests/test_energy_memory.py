"""The memory model (``--energy-model memory``) against spikingjelly 2.0's Lemaire estimator
(``op_counter.estimate_lemaire_energy`` / ``LemaireEnergyProfiler``) on the same models and
inputs, term by term, to 1e-6 relative; the word sizes of a deployed Loihi run against a count
worked out by hand; the profile keys the model needs."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron
from spikingjelly.activation_based.op_counter import (
    LemaireEnergyConfig,
    LemaireEnergyProfiler,
    estimate_lemaire_energy,
)
from torch import nn

from neurokd.data.encoding import DirectEncoding
from neurokd.energy import EnergyProfile, Prices, count_events, price, price_ann
from neurokd.energy.ann import ann_layer_events
from neurokd.energy.memory import sram_pj_per_byte
from neurokd.errors import ConfigError

REL = 1e-6


class SpikeNet(nn.Module):
    """Event input [T, B, 2, 8, 8]: conv 2->4 (3x3, pad 1, bias) LIF, conv 4->4 (3x3, stride 2,
    groups 2, pad 1, no bias) LIF, linear 64->10 (bias). Flattens in forward, so spikingjelly's
    estimator runs with strict=True (nothing outside its scope)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv1 = layer.Conv2d(2, 4, 3, padding=1)
        self.lif1 = neuron.LIFNode(tau=2.0)
        self.conv2 = layer.Conv2d(4, 4, 3, stride=2, padding=1, groups=2, bias=False)
        self.lif2 = neuron.LIFNode(tau=2.0)
        self.fc = layer.Linear(64, 10)
        with torch.no_grad():  # so that both LIFs spike
            self.conv1.weight.mul_(6.0)
            self.conv2.weight.abs_().mul_(15.0)

    def forward(self, x):
        out = self.lif2(self.conv2(self.lif1(self.conv1(x))))
        return self.fc(out.flatten(-3))


class BatchNormNet(nn.Module):
    """The students' block: conv (no bias) - BatchNorm - LIF twice, then a linear read-out, on
    analog direct-encoded input; ``folded()`` is the same network with each BatchNorm folded
    into its conv (a bias), as inference runs it."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.conv1, self.bn1 = layer.Conv2d(1, 8, 3, padding=1, bias=False), layer.BatchNorm2d(8)
        self.lif1 = neuron.LIFNode(tau=2.0)
        self.conv2 = layer.Conv2d(8, 8, 3, stride=2, padding=1, bias=False)
        self.bn2 = layer.BatchNorm2d(8)
        self.lif2 = neuron.LIFNode(tau=2.0)
        self.fc = layer.Linear(128, 10)
        with torch.no_grad():
            for bn in (self.bn1, self.bn2):
                bn.running_mean.uniform_(-0.2, 0.2)
                bn.running_var.uniform_(0.5, 1.5)
                bn.weight.uniform_(2.0, 4.0)
                bn.bias.uniform_(-0.3, 0.3)
        self.eval()

    def forward(self, x):
        out = self.lif1(self.bn1(self.conv1(x)))
        out = self.lif2(self.bn2(self.conv2(out)))
        return self.fc(out.flatten(-3))

    def folded(self) -> nn.Module:
        net = copy.deepcopy(self)
        for conv_name, bn_name in (("conv1", "bn1"), ("conv2", "bn2")):
            conv, bn = getattr(net, conv_name), getattr(net, bn_name)
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            fused = layer.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                                 conv.stride, conv.padding, groups=conv.groups)
            with torch.no_grad():
                fused.weight.copy_(conv.weight * scale[:, None, None, None])
                fused.bias.copy_(bn.bias - bn.running_mean * scale)
            setattr(net, conv_name, fused)
            setattr(net, bn_name, nn.Identity())
        return _NoIdentity(net)


class _NoIdentity(nn.Module):
    """The folded net without its Identity leaves (strict=True refuses any leaf it does not
    price; an Identity costs nothing anyway)."""

    def __init__(self, net):
        super().__init__()
        self.conv1, self.lif1, self.conv2, self.lif2, self.fc = (
            net.conv1, net.lif1, net.conv2, net.lif2, net.fc)

    def forward(self, x):
        out = self.lif2(self.conv2(self.lif1(self.conv1(x))))
        return self.fc(out.flatten(-3))


def lemaire_one_at_a_time(net: nn.Module, frames: torch.Tensor):
    """spikingjelly's estimate of ``net`` on ``frames`` [T, B, ...]: single-step mode, one
    sample and one timestep per call, all calls in one profiler context (its counts add up),
    state reset before each sample."""
    functional.set_step_mode(net, "s")
    profiler = LemaireEnergyProfiler(config=LemaireEnergyConfig(strict=True))
    profiler.bind_model(net)
    with profiler, torch.no_grad():
        for b in range(frames.shape[1]):
            functional.reset_net(net)
            for t in range(frames.shape[0]):
                net(frames[t, b:b + 1])
    functional.reset_net(net)
    return profiler.get_report()


def ours(net: nn.Module, x: torch.Tensor, input_shape, profile="lemaire-2022"):
    functional.set_step_mode(net, "m")
    counts = count_events(net, [x], input_shape=input_shape)
    return counts, price(counts, Prices.of(profile, "memory"))


def assert_equal_to_lemaire(rows, samples: int, report) -> None:
    """Every energy term and every count of spikingjelly's report, from our per-inference rows."""
    def total(key):
        return samples * sum(row.counts[key] for row in rows)

    def part(key):
        return samples * sum(row.part_energy_pj[key] for row in rows)

    def group(key):
        return samples * sum(row.group_energy_pj[key] for row in rows)

    b = report.breakdown_pj
    assert samples * sum(row.energy_pj for row in rows) == pytest.approx(report.total_pj, rel=REL)
    assert part("compute") == pytest.approx(b["ops_pj"], rel=REL)
    assert part("addressing") == pytest.approx(b["addressing_pj"], rel=REL)
    assert part("memory") == pytest.approx(b["memory_pj"], rel=REL)
    assert group("io") == pytest.approx(b["inout_pj"], rel=REL)
    assert group("weights") == pytest.approx(b["params_pj"], rel=REL)
    assert group("potentials") == pytest.approx(b["potential_pj"], rel=REL)
    c = report.counts
    assert total("fanout_synops") == pytest.approx(c["synop"], rel=REL)
    # an add per synaptic op, per bias add and per output spike; a multiply-add per dense MAC
    # and per LIF update (its leak): the lemaire-2022 profile prices them so
    assert total("fanout_synops") + total("bias_adds") + total("active_neuron_updates") == \
        pytest.approx(c["ac"], rel=REL)
    assert total("macs") + total("neuron_updates") == pytest.approx(c["mac"], rel=REL)
    assert total("address_adds") == pytest.approx(c["acc_addr"], rel=REL)
    assert total("address_macs") == pytest.approx(c["mac_addr"], rel=REL)
    assert 4 * (total("event_reads") + total("activation_reads")) == \
        pytest.approx(c["read_in_bytes"], rel=REL)
    assert 4 * (total("event_writes") + total("activation_writes")) == \
        pytest.approx(c["write_out_bytes"], rel=REL)
    assert 4 * (total("weight_reads") + total("bias_reads")) == \
        pytest.approx(c["read_params_bytes"], rel=REL)
    potentials = 4 * (total("synapse_potential_accesses") + total("neuron_potential_accesses"))
    assert potentials == pytest.approx(c["read_potential_bytes"] + c["write_potential_bytes"],
                                       rel=REL)


def test_spike_input_conv_and_linear_equal_spikingjelly():
    net = SpikeNet()
    x = (torch.rand(4, 3, 2, 8, 8, generator=torch.Generator().manual_seed(7)) < 0.3).float()
    counts, rows = ours(net, x, (2, 8, 8))
    assert all(row.counts["activation_reads"] == 0 for row in rows)  # every layer event driven
    assert counts.layers[1].active_neuron_updates > 0  # the second LIF spikes: fc has work
    report = lemaire_one_at_a_time(net, x)
    assert report.warnings == []
    assert_equal_to_lemaire(rows, 3, report)
    # The same spikes multi-step in one call of batch 1 per sample: spikingjelly agrees with
    # itself for event input (its buffers are per frame there too).
    functional.set_step_mode(net, "m")
    per_sample = 0.0
    for b in range(3):
        functional.reset_net(net)
        per_sample += estimate_lemaire_energy(net, x[:, b:b + 1]).total_pj
    assert per_sample == pytest.approx(report.total_pj, rel=1e-12)


def test_analog_input_and_batchnorm_equal_spikingjelly_on_the_folded_net():
    net = BatchNormNet()
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(11))
    model = DirectEncoding(net, (1, 8, 8), 4)
    counts, rows = ours(model, x, (1, 8, 8))
    assert rows[0].counts["macs"] > 0 and rows[0].counts["activation_reads"] > 0
    assert all(layer.has_bias for layer in counts.layers)  # BatchNorm: a bias once folded
    assert counts.layers[0].active_neuron_updates > 0 and counts.layers[1].active_neuron_updates > 0
    folded = net.folded()
    frames = x.unsqueeze(0).expand(4, *x.shape)  # direct encoding: the frame at every step
    report = lemaire_one_at_a_time(folded, frames)
    assert_equal_to_lemaire(rows, 3, report)


def test_ann_reference_equals_spikingjelly_without_neurons():
    class Ann(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(2)
            self.conv = nn.Conv2d(1, 6, 3, stride=2, padding=1)
            self.fc = nn.Linear(6 * 4 * 4, 10)

        def forward(self, x):  # ReLU as a function: strict=True refuses an nn.ReLU leaf
            return self.fc(torch.relu(self.conv(x)).flatten(1))

    ann = Ann().eval()
    sample = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    rows = price_ann(ann_layer_events(ann, sample), Prices.of("lemaire-2022", "memory"))
    report = estimate_lemaire_energy(ann, sample)
    assert report.counts["write_out_bytes"] > 0  # an ANN writes its outputs
    assert sum(row.energy_pj for row in rows) == pytest.approx(report.total_pj, rel=REL)
    assert sum(row.part_energy_pj["memory"] for row in rows) == \
        pytest.approx(report.breakdown_pj["memory_pj"], rel=REL)
    assert sum(row.counts["macs"] for row in rows) == report.counts["mac"]


def test_sram_curve_equals_spikingjelly():
    from spikingjelly.activation_based.op_counter import LemaireEnergyCostConfig

    costs = Prices.of("lemaire-2022", "memory").profile.costs
    reference = LemaireEnergyCostConfig()
    for capacity in (0, 160, 2048, 4000, 8192, 10280, 32768, 100_000, 1 << 20, 5 << 20):
        assert sram_pj_per_byte(costs, capacity) == pytest.approx(
            reference.memory_cost_pj(capacity), rel=1e-12)


def test_deployed_loihi_words_priced_at_their_sizes(tmp_path):
    """A Lava run's spike counts: 8-bit weights, 2-byte biases, 24-bit potentials; the dense
    read-out layer's memory worked out by hand."""
    from neurokd.energy import price_spike_counts, write_spike_counts

    net = SpikeNet()
    x = (torch.rand(4, 3, 2, 8, 8, generator=torch.Generator().manual_seed(7)) < 0.3).float()
    functional.set_step_mode(net, "m")
    counts = count_events(net, [x], input_shape=(2, 8, 8))
    path = write_spike_counts(tmp_path / "r.npz", counts, backend="lava")
    deployed = price_spike_counts(path, "lemaire-2022", energy_model="memory")
    assert deployed.memory_layout == "loihi" and deployed.to_dict()["memory_layout"][
        "word_bytes"] == {"event": 4, "activation": 1, "weight": 1, "bias": 2, "potential": 3}
    fc = deployed.layers[-1]
    spikes = float(counts.layers[1].output_spikes.sum()) / 3  # into fc, per inference
    frames = 4
    cost = deployed.profile.costs

    def c(capacity):
        return sram_pj_per_byte(cost, capacity)

    params = 64 * 10 * 1 + 10 * 2  # 8-bit weights, one 2-byte bias per output
    weights = spikes * 10 * 1 * c(params) + frames * 10 * 2 * c(params)
    potentials = 2 * spikes * 10 * 3 * c(10 * 3)
    fifo = spikes * 4 * c(1000 * 4)
    assert fc.group_energy_pj["weights"] == pytest.approx(weights, rel=1e-12)
    assert fc.group_energy_pj["potentials"] == pytest.approx(potentials, rel=1e-12)
    assert fc.group_energy_pj["io"] == pytest.approx(fifo, rel=1e-12)
    # The same file priced as an ONNX run keeps the profile's 32-bit words: more bytes.
    onnx = write_spike_counts(tmp_path / "o.npz", counts, backend="onnx")
    wide = price_spike_counts(onnx, "lemaire-2022", energy_model="memory")
    assert wide.memory_layout == "32bit"
    assert wide.layers[-1].group_energy_pj["weights"] > fc.group_energy_pj["weights"]


def test_a_compute_only_profile_is_refused_for_memory_naming_the_keys():
    compute_only = EnergyProfile("old-chip", {"mac_pj": 1.0, "synop_pj": 0.5,
                                              "neuron_update_pj": 0.2}, "a test")
    Prices.of(compute_only, "compute")  # still prices the compute model
    with pytest.raises(ConfigError) as error:
        Prices.of(compute_only, "memory")
    message = str(error.value)
    for key in ("address_add_pj", "address_mac_pj", "sram_8kib_pj", "sram_32kib_pj",
                "sram_1mib_pj"):
        assert key in message
    assert "bias_add_pj" not in message  # falls back to synop_pj
    assert "memory energy model" in message


def test_memory_model_keeps_compute_costs_and_replaces_border_exact_synops():
    """Under memory the compute part prices Lemaire's fan-out SOPs; on a dense-only network
    (no borders) they equal the border-exact SOPs, and the compute part is the compute model's
    energy plus the bias adds."""
    torch.manual_seed(0)
    net = nn.Sequential(layer.Linear(20, 12), neuron.LIFNode(v_threshold=0.3), layer.Linear(12, 5))
    functional.set_step_mode(net, "m")
    x = (torch.rand(3, 2, 20) < 0.4).float()
    counts = count_events(net, [x], input_shape=(20,))
    compute = price(counts, Prices.of("45nm-fp32", "compute"))
    memory = price(counts, Prices.of("45nm-fp32", "memory"))
    for c_row, m_row in zip(compute, memory, strict=True):
        assert m_row.counts["fanout_synops"] == c_row.counts["synops"]
        bias = m_row.counts["bias_adds"] * 0.9
        assert m_row.part_energy_pj["compute"] == pytest.approx(c_row.energy_pj + bias)
        assert m_row.part_energy_pj["memory"] > 0
    assert math.isclose(memory[0].counts["bias_adds"], 12 * 3)  # 12 outputs x T, per sample


def test_memory_exact_differs_from_lemaire_only_by_the_exact_fan_out():
    """`memory-exact` = `memory` with each input spike's fan-out counted output by output
    (explicit loops here, helpers.covering_outputs): the energy moves by exactly the synaptic
    ops, address adds, weight reads and potential accesses of the difference."""
    from helpers import covering_outputs

    net = SpikeNet()
    x = (torch.rand(4, 3, 2, 8, 8, generator=torch.Generator().manual_seed(7)) < 0.3).float()
    counts, lemaire = ours(net, x, (2, 8, 8))
    exact = price(counts, Prices.of("lemaire-2022", "memory-exact"))
    cost = load_profile_costs()
    maps = [x.sum((0, 1)), torch.as_tensor(counts.layers[1].input_events)]
    for layer_events, spikes_in, m_row, e_row in zip(counts.layers[:2], maps, lemaire[:2],
                                                     exact[:2], strict=True):
        g = layer_events.geometry
        per_group = g.out_channels // g.groups
        rows = covering_outputs(g.input_shape[1], g.kernel[0], g.stride[0], g.padding[0], 1)
        cols = covering_outputs(g.input_shape[2], g.kernel[1], g.stride[1], g.padding[1], 1)
        spikes, reached = 0.0, 0.0
        for c in range(g.input_shape[0]):
            for i in range(g.input_shape[1]):
                for j in range(g.input_shape[2]):
                    n = float(spikes_in[c, i, j])
                    spikes += n
                    reached += n * per_group * rows[i] * cols[j]
        spikes, reached = spikes / 3, reached / 3  # per inference
        reach = math.prod(-(-k // s) for k, s in zip(g.kernel, g.stride, strict=True))
        lemaire_ops = spikes * per_group * reach
        lemaire_touch = spikes * per_group * g.kernel[0] * g.kernel[1]
        assert e_row.counts["synops"] == pytest.approx(reached, rel=1e-12)
        assert m_row.counts["fanout_synops"] == pytest.approx(lemaire_ops, rel=1e-12)
        params = 4 * (g.out_channels * g.fan_in + (g.out_channels if layer_events.has_bias else 0))
        potentials = 4 * math.prod(g.output_shape)
        delta = (reached - lemaire_ops) * cost["synop_pj"] + (reached - lemaire_touch) * (
            cost["address_add_pj"] + 4 * sram_pj_per_byte(cost, params)
            + 2 * 4 * sram_pj_per_byte(cost, potentials))
        assert e_row.energy_pj == pytest.approx(m_row.energy_pj + delta, rel=1e-9)
        assert reached < lemaire_touch  # borders (and conv2's stride 2) reach fewer outputs
    # a dense layer's spike reaches every output: the two models agree on it
    assert exact[2].energy_pj == pytest.approx(lemaire[2].energy_pj, rel=1e-12)


def load_profile_costs():
    return Prices.of("lemaire-2022", "memory").profile.costs
