"""Loihi graph export (residual adds, max pooling): the float graph against the student, the
integer model against the float graph, the file read back and its hostile variants refused,
Lava against the integer model group by group, and the deployed size against a brute count."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

from neurokd.data import load_data
from neurokd.data.encoding import DirectEncoding
from neurokd.errors import NeuroKDError
from neurokd.exporters import export_loihi
from neurokd.exporters.loihi.deployed_size import connections
from neurokd.exporters.loihi.graph_file import read_graph
from neurokd.exporters.loihi.graph_network import run_graph_fixed_point, run_graph_float
from neurokd.exporters.loihi.lava_host import lava_python, run_lava
from neurokd.student.geometry import LayerGeometry
from neurokd.student.sources import StudentSource

from helpers import assert_one_line_error, make_student, requires_lava, run_cli

SHAPE = (1, 8, 8)


class TinyResidual(nn.Module):
    """Every graph form in one net: a max pool of spikes, a membrane-shortcut block with an
    identity shortcut (spikes added to a membrane input, across a depth difference of one), a
    SEW block (two spike trains summed, the sum feeding the readout)."""

    def __init__(self) -> None:
        super().__init__()
        m = "m"
        self.conv0, self.sn0 = layer.Conv2d(1, 6, 3, padding=1, step_mode=m), \
            neuron.LIFNode(step_mode=m)
        self.pool = layer.MaxPool2d(2, step_mode=m)
        self.conv1, self.sn1 = layer.Conv2d(6, 6, 3, padding=1, step_mode=m), \
            neuron.LIFNode(step_mode=m)
        self.conv2, self.sn2 = layer.Conv2d(6, 6, 3, padding=1, step_mode=m), \
            neuron.IFNode(step_mode=m)
        self.conv3, self.sn3 = layer.Conv2d(6, 6, 3, padding=1, step_mode=m), \
            neuron.LIFNode(tau=3.0, v_threshold=0.5, step_mode=m)
        self.flat, self.fc = layer.Flatten(step_mode=m), layer.Linear(6 * 4 * 4, 10, step_mode=m)

    def forward(self, x):
        x = self.pool(self.sn0(self.conv0(x)))
        y = self.sn2(self.conv2(self.sn1(self.conv1(x))) + x)
        z = self.sn3(self.conv3(y)) + y
        return self.fc(self.flat(z))


def tiny_residual(seed: int = 0) -> StudentSource:
    torch.manual_seed(seed)
    model = TinyResidual()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                m.weight.mul_(3.0)
    return StudentSource(DirectEncoding(model, SHAPE, 4).eval(), SHAPE, 4, "tiny")


def tiny_maxpool() -> StudentSource:
    """A chain but for its max pools (overlapping, padded, then a plain one)."""
    torch.manual_seed(1)
    model = nn.Sequential(
        layer.Conv2d(1, 8, 3, padding=1, step_mode="m"), neuron.LIFNode(step_mode="m"),
        layer.MaxPool2d(3, stride=2, padding=1, step_mode="m"),
        layer.Conv2d(8, 8, 3, padding=1, step_mode="m"), neuron.IFNode(step_mode="m"),
        layer.MaxPool2d(2, step_mode="m"), layer.Flatten(step_mode="m"),
        layer.Linear(8 * 2 * 2, 10, step_mode="m"))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                m.weight.mul_(3.0)
    return StudentSource(DirectEncoding(model, SHAPE, 3).eval(), SHAPE, 3, "pooled")


class WideShortcut(nn.Module):
    """128 channels: its relay and identity shortcut are depthwise synapses of 128 groups
    (Lava's Conv keeps groups in an int8: the runner must expand them)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.sn1 = layer.Conv2d(1, 128, 3, padding=1, step_mode="m"), \
            neuron.LIFNode(step_mode="m")
        self.conv2, self.sn2 = layer.Conv2d(128, 128, 3, padding=1, step_mode="m"), \
            neuron.LIFNode(step_mode="m")
        self.conv3, self.sn3 = layer.Conv2d(128, 128, 1, step_mode="m"), \
            neuron.IFNode(step_mode="m")
        self.fc = nn.Sequential(layer.Flatten(step_mode="m"),
                                layer.Linear(128 * 64, 10, step_mode="m"))

    def forward(self, x):
        s = self.sn1(self.conv1(x))
        return self.fc(self.sn3(self.conv3(self.sn2(self.conv2(s))) + s))


def wide_shortcut() -> StudentSource:
    torch.manual_seed(2)
    model = WideShortcut()
    with torch.no_grad():
        model.conv1.weight.mul_(3.0)
        model.conv2.weight.mul_(12.0)
    return StudentSource(DirectEncoding(model, SHAPE, 2).eval(), SHAPE, 2, "wide")


def residual_student() -> StudentSource:
    """neurokd's own ``--student resnet`` (conv shortcuts and identity shortcuts)."""
    model, config = make_student("resnet", width=4, timesteps=3, seed=0)
    return StudentSource(model.eval(), SHAPE, 3, "resnet", config={"dataset": "digits"})


def digits(count: int) -> torch.Tensor:
    return load_data("digits").test.tensors[0][:count].float()


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("graph")
    paths = {}
    for name, source in (("tiny", tiny_residual()), ("pooled", tiny_maxpool()),
                         ("resnet", residual_student()), ("wide", wide_shortcut())):
        paths[name] = folder / f"{name}.net"
        export_loihi(source, paths[name], dataset="digits", max_samples=64, lava_samples=0,
                     min_agreement=0.5)
    return paths


def test_residual_student_exports_as_a_graph_not_netx(exported):
    stored = read_graph(exported["resnet"])
    roles = [g.role for g in stored.network.groups]
    assert roles.count("relay") == 3 and roles[-1] == "readout" and "layer" in roles
    with h5py.File(exported["resnet"], "r") as handle:
        assert "layer" not in handle  # not netx: lava-dl would read a chain out of /layer
    # every group's synapses come from one depth: relays even the shortcut out
    depths = stored.network.depths
    for k in range(len(stored.network.groups)):
        seen = {0 if s.source < 0 else depths[s.source] for s in stored.network.incoming(k)}
        assert seen == {depths[k] - 1}


@pytest.mark.parametrize("which", ["tiny", "pooled", "resnet", "wide"])
def test_float_graph_is_the_student(which, exported):
    """The float network in the file (BatchNorm folded, adds as synapses into one group, max
    pools, relays as identities) computes what the student computes."""
    source = {"tiny": tiny_residual, "pooled": tiny_maxpool, "resnet": residual_student,
              "wide": wide_shortcut}[which]()
    stored = read_graph(exported[which])
    x = digits(32)
    logits, _ = run_graph_float(stored.float_graph, x)
    with torch.no_grad():
        functional.reset_net(source.model)
        expected = source.model(x).numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-4)


@pytest.mark.parametrize("which", ["tiny", "pooled", "resnet", "wide"])
def test_integer_model_tracks_the_float_graph(which, exported):
    stored = read_graph(exported[which])
    network = stored.network
    x = digits(48)
    run = run_graph_fixed_point(network, network.quantize_input(x))
    _, float_spikes = run_graph_float(stored.float_graph, x)
    for k, spikes in run.spikes.items():
        name, rate = network.groups[k].name, spikes.mean()
        assert (spikes.swapaxes(0, 1) == float_spikes[k]).mean() > 0.97, name
        if network.groups[k].role != "relay":
            assert rate > 0.002, (name, rate)   # the comparison is not of silent groups
    for k, group in enumerate(network.groups):
        if group.role == "relay":  # a relay repeats its source, in the same step
            source = network.incoming(k)[0].source
            assert np.array_equal(run.spikes[k], run.spikes[source]), group.name
        if group.role == "maxpool":  # an OR over each window of its source's spikes
            syn = network.incoming(k)[0]
            src = torch.from_numpy(run.spikes[syn.source].astype(np.float32))
            flat = src.reshape(-1, *src.shape[2:])
            pooled = F.max_pool2d(flat, syn.geometry.kernel, syn.stride, syn.padding)
            assert np.array_equal(run.spikes[k], pooled.reshape(run.spikes[k].shape).numpy())
    integer = network.logits(run.readout).mean(1).argmax(-1)
    floating = run_graph_float(stored.float_graph, x)[0].mean(0).argmax(-1)
    # untrained nets have near-tied logits: a few argmaxes flip at 8 bits (the spikes above
    # are the close check); the wide net's random 8,192-input readout ties them all
    if which != "wide":
        assert (integer == floating).mean() >= 0.8


def test_graph_file_round_trips(exported, tmp_path):
    """Written, read, written again from what was read: the same arrays."""
    from neurokd.exporters.loihi.graph_file import write_graph

    first = read_graph(exported["tiny"])
    again = tmp_path / "again.net"
    write_graph(again, first.network, first.float_graph, first.meta)
    second = read_graph(again)
    for a, b in zip(first.network.groups, second.network.groups, strict=True):
        assert (a.name, a.role, a.shape, a.neuron) == (b.name, b.role, b.shape, b.neuron)
        assert np.array_equal(a.bias, b.bias)
    for a, b in zip(first.network.synapses, second.network.synapses, strict=True):
        assert (a.source, a.target, a.geometry) == (b.source, b.target, b.geometry)
        assert np.array_equal(a.weight, b.weight)


def _hostile(original: Path, folder: Path, name: str, edit) -> Path:
    path = folder / f"{name}.net"
    shutil.copy(original, path)
    with h5py.File(path, "r+") as handle:
        edit(handle)
    return path


def _set(handle, key: str, value) -> None:
    del handle[key]
    handle[key] = value


HOSTILE = {
    "edge-to-nowhere": (lambda h: _set(h, "synapse/3/target", np.int64(99)), "target = 99"),
    "source-to-nowhere": (lambda h: _set(h, "synapse/3/source", np.int64(-7)), "source"),
    "cycle": (lambda h: _set(h, "synapse/1/target", np.int64(0)), "cycle"),
    "shape-lie": (lambda h: _set(h, "group/1/shape", np.array([6, 9, 9])), "shape"),
    "channels-lie": (lambda h: _set(h, "synapse/1/outChannels", np.int64(7)), "outchannels"),
    "unaligned": (lambda h: _set(h, "synapse/5/source", np.int64(1)), "not aligned"),
    "relay-not-relaying": (lambda h: _set(h, "group/3/neuron/vThMant", np.int64(5)), "relay"),
    "huge-claim": (lambda h: _set(h, "group/1/shape", np.array([4096, 4096, 4096])),
                   "neurokd allows"),
    "over-budget": (lambda h: _set(h, "group/1/shape", np.array([1024, 64, 64])),
                    "--max-memory"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_graph_files_are_one_line(case, exported, tmp_path, capsys, monkeypatch):
    edit, words = HOSTILE[case]
    path = _hostile(exported["tiny"], tmp_path, case, edit)
    if case == "over-budget":  # 4 M neurons x T x their state: past a 64 MB budget
        monkeypatch.setenv("NEUROKD_MAX_MEMORY", "64M")
    outcome = run_cli(capsys, "simulate", str(path), "--dataset", "digits", "--samples", "2",
                      "--save", str(tmp_path / "r.npz"))
    assert_one_line_error(outcome, 2, words)
    assert str(path) in outcome.err
    assert not (tmp_path / "r.npz").exists()


def test_graph_structure_the_tiny_net_has(exported):
    """What the hostile cases edit: synapse 3 is the relay's, group 3 the relay, synapse 5
    the identity shortcut from the relay (pointing it at the pool, group 1, one step
    earlier, unaligns the add)."""
    network = read_graph(exported["tiny"]).network
    names = [g.name for g in network.groups]
    # a neuron layer's group is named by its layer, the conv before it (docs/formats.md)
    assert names == ["conv0", "pool", "conv1", "pool@relay1", "conv2", "conv3", "conv2@relay1",
                     "fc"]
    assert [(s.name, s.source, s.target) for s in network.synapses][:5] == [
        ("conv0", -1, 0), ("pool", 0, 1), ("conv1", 1, 2), ("pool@relay1<-pool", 1, 3),
        ("conv2", 2, 4)]
    assert [(s.name, s.source) for s in network.incoming(4)] == [("conv2", 2),
                                                                   ("pool+identity", 3)]
    assert [(s.name, s.source) for s in network.incoming(7)] == [("fc", 5), ("fc", 6)]


def test_what_the_graph_cannot_hold_is_refused_by_name(tmp_path):
    pool_input = nn.Sequential(layer.MaxPool2d(2, step_mode="m"),
                               layer.Conv2d(1, 4, 3, padding=1, step_mode="m"),
                               neuron.LIFNode(step_mode="m"), layer.Flatten(step_mode="m"),
                               layer.Linear(64, 10, step_mode="m"))
    uneven = nn.Sequential(layer.Conv2d(1, 4, 3, padding=1, step_mode="m"),
                           neuron.LIFNode(step_mode="m"),
                           layer.AdaptiveAvgPool2d(3, step_mode="m"),
                           layer.Flatten(step_mode="m"), layer.Linear(36, 10, step_mode="m"))
    cases = [(pool_input, "0 (max pooling of the graded input"),
             (uneven, "2 (AdaptiveAvgPool2d: only average pools")]
    for model, expected in cases:
        source = StudentSource(DirectEncoding(model, SHAPE, 2).eval(), SHAPE, 2, "user")
        with pytest.raises(NeuroKDError) as info:
            export_loihi(source, tmp_path / "out.net", random_inputs=True)
        assert "cannot export to Loihi" in str(info.value)
        assert expected in str(info.value), str(info.value)
    assert list(tmp_path.iterdir()) == []


class SumPool(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.sn = layer.Conv2d(1, 4, 3, padding=1, step_mode="m"), \
            neuron.LIFNode(step_mode="m")
        self.conv2, self.sn2 = layer.Conv2d(4, 4, 3, padding=1, step_mode="m"), \
            neuron.LIFNode(step_mode="m")
        self.pool = layer.MaxPool2d(2, step_mode="m")
        self.fc = nn.Sequential(layer.Flatten(step_mode="m"), layer.Linear(64, 10, step_mode="m"))

    def forward(self, x):
        s = self.sn(self.conv(x))
        return self.fc(self.pool(self.sn2(self.conv2(s)) + s))


def test_max_pool_of_a_spike_sum_is_refused(tmp_path):
    source = StudentSource(DirectEncoding(SumPool(), SHAPE, 2).eval(), SHAPE, 2, "user")
    with pytest.raises(NeuroKDError, match=r"pool \(max pooling of a sum of spike trains"):
        export_loihi(source, tmp_path / "out.net", random_inputs=True)


def test_connections_against_a_brute_count():
    """Synapses of a conv = what a conv of ones over an image of ones sums to."""
    for kernel, stride, padding, dilation, groups in ((3, 1, 1, 1, 1), (3, 2, 1, 1, 2),
                                                      (2, 2, 0, 1, 4), (3, 1, 2, 2, 1)):
        geometry = LayerGeometry("conv", (4, 7, 9), 8, 4 // groups, (kernel, kernel),
                                 (stride, stride), (padding, padding), (dilation, dilation),
                                 groups)
        brute = F.conv2d(torch.ones(1, 4, 7, 9), torch.ones(8, 4 // groups, kernel, kernel),
                         stride=stride, padding=padding, dilation=dilation, groups=groups)
        assert connections(geometry) == int(brute.sum())
    assert connections(LayerGeometry("dense", (12,), 5, 12)) == 60


def test_export_prints_the_deployed_size(exported, capsys, tmp_path):
    outcome = run_cli(capsys, "export", "--target", "loihi", "--model",
                      "test_loihi_graph:build_tiny", "--random-weights", "--input-shape", "1,8,8",
                      "--timesteps", "4", "--dataset", "digits", "-o", str(tmp_path / "t.net"),
                      "--check-samples", "16", "--lava-samples", "0")
    assert outcome.code == 0, outcome.err
    network = read_graph(tmp_path / "t.net").network
    neurons = sum(int(np.prod(g.shape)) for g in network.groups)
    assert f"deployed size: {neurons:,} neurons in {len(network.groups)} groups" in outcome.out
    assert "Loihi 2 cores" in outcome.out and "neurokd Loihi graph" in outcome.out


def build_tiny() -> nn.Module:
    """``--model test_loihi_graph:build_tiny``: the tiny residual net, multi-step."""
    return tiny_residual().model.model


@requires_lava
@pytest.mark.parametrize("which", ["tiny", "pooled", "resnet", "wide"])
def test_lava_runs_the_graph_as_the_integer_model(which, exported):
    """Every spike of every group (relays and max pools included) and every readout value."""
    stored = read_graph(exported[which])
    network = stored.network
    x_q = network.quantize_input(digits(5))
    lava = run_lava(lava_python(), exported[which], x_q, network.timesteps, chunk=5)
    fixed = run_graph_fixed_point(network, x_q)
    for k, expected in fixed.spikes.items():
        got = lava[f"spikes_{k}"]
        assert got.shape == expected.shape
        assert np.array_equal(got, expected), network.groups[k].name
    assert sum(int(s.sum()) for s in fixed.spikes.values()) > 100
    if not network.readout.spiking:
        assert np.array_equal(lava["readout"], fixed.readout)
    assert list(lava["depths"]) == network.depths


@requires_lava
def test_cli_residual_student_export_simulate_energy(trained_resnet, tmp_path, capsys):
    export = tmp_path / "student.net"
    outcome = run_cli(capsys, "export", "--target", "loihi", str(trained_resnet),
                      "-o", str(export), "--check-samples", "64", "--lava-samples", "4")
    assert outcome.code == 0, outcome.err
    assert "neurokd Loihi graph" in outcome.out and "deployed size" in outcome.out
    assert "on 4 samples: spikes and readout identical" in outcome.out
    outcome = run_cli(capsys, "simulate", str(export), "--samples", "4", "-q", "--save",
                      str(tmp_path / "r.npz"))
    assert outcome.code == 0, outcome.err
    assert "argmax 100.00%" in outcome.out
    outcome = run_cli(capsys, "energy", "report", "--from-sim", str(tmp_path / "r.npz"),
                      "--profile", "loihi", "-q")
    assert outcome.code == 0, outcome.err
    assert "layers.0.conv2" in outcome.out and "+identity" in outcome.out


@pytest.fixture(scope="module")
def trained_resnet(tmp_path_factory) -> Path:
    """A 1-epoch digits ``--student resnet`` run."""
    from neurokd import RunConfig, distill

    out = tmp_path_factory.mktemp("resnet")
    distill(RunConfig(out=str(out), name="run", student="resnet", width=4, epochs=1,
                      teacher_epochs=1))
    return out / "run" / "student.pt"
