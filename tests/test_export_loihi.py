"""Loihi export: the netx file read back by h5py and by lava-dl netx, Lava's fixed-point
simulation compared spike by spike with neurokd's integer model, refusals, the CLI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

from neurokd.data import load_data
from neurokd.data.encoding import DirectEncoding
from neurokd.errors import NeuroKDError
from neurokd.exporters import export_loihi
from neurokd.exporters.loihi.fixed_point import run_fixed_point
from neurokd.exporters.loihi.lava_host import RUNNER, lava_python
from neurokd.exporters.loihi.netx_file import read_netx, run_float
from neurokd.student.sources import StudentSource

from helpers import assert_one_line_error, requires_lava, run_cli

SHAPE = (1, 8, 8)
REPO = Path(__file__).resolve().parent.parent




@pytest.fixture(scope="module")
def trained_export(trained_run, tmp_path_factory):
    path = tmp_path_factory.mktemp("loihi") / "student.net"
    result = export_loihi(trained_run / "student.pt", path, max_samples=200, lava_samples=0)
    return path, result


def _digits(count: int) -> torch.Tensor:
    return load_data("digits").test.tensors[0][:count]


def run_lava(path: Path, x_q: np.ndarray, timesteps: int, tmp_path: Path) -> dict:
    """lava_runner.py in .venv-lava, as `neurokd simulate` drives it."""
    request, result = tmp_path / "request.npz", tmp_path / "result.npz"
    np.savez(request, net=np.array(str(path)), inputs=x_q.astype(np.int32),
             timesteps=np.array(timesteps), message_bits=np.array(8), chunk=np.array(4))
    proc = subprocess.run([str(lava_python()), str(RUNNER), str(request), str(result)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with np.load(result, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def test_netx_layout_read_back_by_h5py(trained_export):
    path, result = trained_export
    with h5py.File(path, "r") as f:
        layers = f["layer"]
        kinds = [layers[str(i)]["type"][0].decode() for i in range(len(layers))]
        assert kinds == ["input", "conv", "conv", "conv", "flatten", "dense"]
        assert list(layers["0/shape"][()]) == [1, 8, 8]
        assert list(layers["4/shape"][()]) == [32 * 2 * 2]  # flatten before the dense layer
        convs = [layers[str(i)] for i in (1, 2, 3)]
        assert [list(c["shape"][()]) for c in convs] == [[16, 8, 8], [32, 4, 4], [32, 2, 2]]
        assert [list(c["stride"][()]) for c in convs] == [[1, 1], [2, 2], [2, 2]]
        for index, group in ((1, convs[0]), (2, convs[1]), (3, convs[2]), (5, layers["5"])):
            weight = group["weight"][()]
            assert weight.dtype.kind == "i" and weight.min() >= -256 and weight.max() <= 254
            assert (weight % 2 == 0).all()  # 8-bit values stored doubled, as slayer does
            assert np.abs(group["bias"][()]).max() <= 4095
            cuba = group["neuron"]
            assert cuba["type"][0] == b"CUBA" and cuba["iDecay"][()] == 4096
            scale = result.layers[index - 1 if index < 5 else 3].scale
            if index < 5:  # LIF tau=2 with decay_input: v halves each step
                assert cuba["vDecay"][()] == 2048
                assert cuba["vThMant"][()] == round(scale * 1.0)  # threshold 1.0, exact
            else:  # readout: no memory, never fires
                assert cuba["vDecay"][()] == 4096 and cuba["vThMant"][()] == 2 ** 17 - 1
        float_w = f["neurokd/float/1/weight"][()]  # BatchNorm-folded float weights
        np.testing.assert_allclose(convs[1]["weight"][()], scale_of(result, 1) * float_w / 2,
                                   atol=1.0 + 1e-9)
        meta = {k: json.loads(v) for k, v in f.attrs.items()}
    assert meta["neurokd.dataset"] == "digits" and meta["neurokd.timesteps"] == 4
    # a 2-epoch student has near-tied logits: 8-bit weights flip some argmaxes, not accuracy
    assert result.agreement.argmax_agreement >= 0.75
    assert abs(result.float_accuracy - result.quantized_accuracy) <= 0.04
    assert all(share > 0.9 for share in result.spike_agreement.values())


def scale_of(result, index: int) -> float:
    return result.layers[index].scale


@requires_lava
def test_lava_dl_netx_loads_the_file(trained_export):
    path, _ = trained_export
    script = ("import json, sys\nfrom lava.lib.dl import netx\n"
              "net = netx.hdf5.Network(net_config=sys.argv[1], input_message_bits=8)\n"
              "print(json.dumps([[type(l).__name__, list(map(int, l.shape))] "
              "for l in net.layers]))\n")
    proc = subprocess.run([str(lava_python()), "-c", script, str(path)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    layers = json.loads(proc.stdout.strip().splitlines()[-1])
    assert layers == [["Conv", [8, 8, 16]], ["Conv", [4, 4, 32]], ["Conv", [2, 2, 32]],
                      ["Dense", [10]]]  # netx's W,H,C order


def _user_models():
    """Models that exercise other mappings: dense first layer on graded input, IF neurons,
    LIF without decay_input and tau=3, grouped / dilated convs with bias, a spiking readout."""
    torch.manual_seed(4)
    dense = nn.Sequential(
        layer.Flatten(step_mode="m"), layer.Linear(64, 32, step_mode="m"),
        neuron.LIFNode(tau=3.0, decay_input=False, v_threshold=0.7, step_mode="m"),
        layer.Linear(32, 24, step_mode="m"), neuron.IFNode(step_mode="m"),
        layer.Linear(24, 10, step_mode="m"))
    conv = nn.Sequential(
        layer.Conv2d(1, 8, 3, padding=1, step_mode="m"), neuron.LIFNode(step_mode="m"),
        layer.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2, step_mode="m"),
        neuron.LIFNode(tau=4.0, v_threshold=0.2, step_mode="m"),
        layer.Flatten(step_mode="m"), layer.Linear(8 * 8 * 8, 10, step_mode="m"),
        neuron.IFNode(v_threshold=0.2, step_mode="m"))
    pooled = nn.Sequential(  # average pools netx cannot load, folded into the next layer
        layer.Conv2d(1, 8, 3, padding=1, step_mode="m"), neuron.LIFNode(step_mode="m"),
        layer.AvgPool2d(2, step_mode="m"), layer.Conv2d(8, 8, 3, padding=1, step_mode="m"),
        neuron.LIFNode(v_threshold=0.3, step_mode="m"), layer.AdaptiveAvgPool2d(2, step_mode="m"),
        layer.Flatten(step_mode="m"), layer.Linear(8 * 2 * 2, 10, step_mode="m"))
    with torch.no_grad():
        for model in (dense, conv, pooled):
            for m in model.modules():
                if isinstance(m, nn.Linear | nn.Conv2d):
                    m.weight.mul_(3.0)
    return {name: StudentSource(DirectEncoding(model, SHAPE, steps).eval(), SHAPE, steps, name)
            for name, model, steps in (("dense", dense, 5), ("conv", conv, 3),
                                       ("pooled", pooled, 4))}


@requires_lava
@pytest.mark.parametrize("which", ["trained", "dense", "conv", "pooled"])
def test_lava_spikes_equal_the_integer_model(which, trained_export, tmp_path):
    if which == "trained":
        path = trained_export[0]
    else:
        path = tmp_path / f"{which}.net"
        export_loihi(_user_models()[which], path, min_agreement=0.5, random_inputs=True)
    stored = read_netx(path)
    network = stored.network
    x_q = network.quantize_input(_digits(6))
    lava = run_lava(path, x_q, network.timesteps, tmp_path)
    fixed = run_fixed_point(network, x_q)
    spiking = [k for k, lay in enumerate(network.layers) if lay.spiking]
    assert len(spiking) == len(fixed.spikes)
    for k, expected in zip(spiking, fixed.spikes, strict=True):
        got = lava[f"spikes_{k}"]
        assert got.shape == expected.shape
        assert np.array_equal(got, expected), network.layers[k].name
        assert 0.005 < expected.mean() < 0.95, (network.layers[k].name, expected.mean())
    if not network.layers[-1].spiking:
        assert np.array_equal(lava["readout"], fixed.readout)  # integer logits, every step
    assert fixed.saturated == 0


def test_unsupported_layers_are_refused_by_name_and_nothing_is_written(tmp_path):
    # residual adds and max pooling export as a graph file (tests/test_loihi_graph.py)
    soft = nn.Sequential(layer.Flatten(step_mode="m"), layer.Linear(64, 10, step_mode="m"),
                         neuron.LIFNode(v_reset=None, step_mode="m"),
                         layer.Linear(10, 10, step_mode="m"))
    cases = [(soft, ["2 (soft reset"])]
    for model, expected in cases:
        source = model
        if isinstance(model, nn.Sequential):  # a user's multi-step model
            source = StudentSource(DirectEncoding(model, SHAPE, 2).eval(), SHAPE, 2, "user")
        with pytest.raises(NeuroKDError) as info:
            export_loihi(source, tmp_path / "out.net", input_shape=SHAPE, timesteps=2,
                         random_inputs=True)
        assert "cannot export to Loihi" in str(info.value)
        for text in expected:
            assert text in str(info.value), str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_failed_integer_check_writes_nothing(trained_run, tmp_path):
    target = tmp_path / "s.net"
    with pytest.raises(NeuroKDError, match="nothing written"):
        export_loihi(trained_run / "student.pt", target, max_samples=50, min_agreement=1.01)
    assert list(tmp_path.iterdir()) == []


@requires_lava
def test_export_refuses_a_file_lava_runs_differently(trained_run, tmp_path, monkeypatch):
    """The export's Lava check compares every spike: one flipped spike in the integer
    model's replay (as a wrong decay or rounding would give) stops the export."""
    from neurokd.exporters.loihi import export as loihi

    real = loihi.run_fixed_point

    def one_spike_off(network, x_q):
        run = real(network, x_q)  # one run: the Lava check takes its first samples
        run.spikes[1].reshape(-1)[7] ^= 1
        return run

    monkeypatch.setattr(loihi, "run_fixed_point", one_spike_off)
    with pytest.raises(NeuroKDError, match=r"differently .* in features\.3 on 4 samples"):
        export_loihi(trained_run / "student.pt", tmp_path / "s.net", max_samples=50,
                     lava_samples=4)
    assert list(tmp_path.iterdir()) == []


def test_missing_lava_environment_is_one_line(trained_export, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("NEUROKD_LAVA_PYTHON", str(tmp_path / "no-such-python"))
    outcome = run_cli(capsys, "simulate", str(trained_export[0]), "--samples", "2",
                      "--save", str(tmp_path / "r.npz"))
    assert_one_line_error(outcome, 1, "make lava")  # the machine's fault, not the input's
    assert not (tmp_path / "r.npz").exists()


@requires_lava
def test_cli_export_then_simulate(trained_run, tmp_path, capsys):
    export = tmp_path / "student.net"
    outcome = run_cli(capsys, "export", "--target", "loihi", str(trained_run / "student.pt"),
                      "-o", str(export), "--check-samples", "100")
    assert outcome.code == 0, outcome.err
    assert "features.3" in outcome.out and "argmax" in outcome.out and "clipped" in outcome.out
    assert "calibrated on the digits train split" in outcome.out  # never on the test split
    assert "Lava (lava-dl netx, fixed_pt) on 32 samples: spikes and readout identical" in \
        outcome.out
    outcome = run_cli(capsys, "simulate", str(export), "--samples", "5", "-q", "--json",
                      str(tmp_path / "r.json"), "--save", str(tmp_path / "r.npz"))
    assert outcome.code == 0, outcome.err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["samples"] == 5 and report["agreement"] == 1.0
    assert set(report["identical_spikes"].values()) == {1.0}
    for key in ("lava_accuracy", "torch_accuracy", "quantized_accuracy"):
        assert 0.0 <= report[key] <= 1.0
    with np.load(tmp_path / "r.npz", allow_pickle=False) as data:
        assert str(data["format"]) == "neurokd.spike-counts" and int(data["version"]) == 1
        assert list(data["layer_names"]) == ["features.0", "features.3", "features.6",
                                             "classifier.1"]
        assert list(data["layer_types"]) == ["conv", "conv", "conv", "dense"]
        assert list(data["geometry_0"]) == [16, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1]
        assert list(data["geometry_3"]) == [10, 128]
        pixels = (_digits(5).numpy() != 0).sum(0) * 4  # non-zero graded inputs, T=4 steps
        assert np.array_equal(data["input_events_0"], pixels.astype(np.float64))
        for i, name in enumerate(["features.0", "features.3", "features.6"]):
            assert int(data[f"has_neurons_{i}"]) == 1
            spikes = data[f"output_spikes_{i}"]
            assert spikes.sum() == report["spike_counts"][name]
            assert np.array_equal(data[f"input_events_{i + 1}"].ravel(), spikes.ravel())
        assert int(data["has_neurons_3"]) == 0 and "output_spikes_3" not in data.files


@pytest.mark.slow
def test_average_pools_fold_without_changing_the_float_network(tmp_path):
    """The folded float twin in the file computes what the pooled student computes."""
    source = _user_models()["pooled"]
    result = export_loihi(source, tmp_path / "p.net", min_agreement=0.5, random_inputs=True)
    assert result.folded_pools == ["2", "5"]
    stored = read_netx(tmp_path / "p.net")
    assert [lay.kind for lay in stored.network.layers] == ["conv", "conv", "dense"]
    assert stored.network.layers[1].weight.shape == (8, 8, 6, 6)  # 3x3 taps as 2x2 blocks
    assert stored.network.layers[1].stride == (2, 2)
    x = _digits(64)
    logits, _ = run_float(stored.float_layers, x, 4)
    with torch.no_grad():
        functional.reset_net(source.model)
        expected = source.model(x).numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-4)


def test_clipped_membranes_are_reported(tmp_path):
    """IF neurons driven hard negative run past Loihi's 24-bit v register: the export says so."""
    model = nn.Sequential(layer.Flatten(step_mode="m"), layer.Linear(64, 4, bias=False,
                                                                     step_mode="m"),
                          neuron.IFNode(step_mode="m"), layer.Linear(4, 10, step_mode="m"))
    with torch.no_grad():
        model[1].weight.fill_(-1.0)  # digits are >= 0: every neuron sinks every step
    source = StudentSource(DirectEncoding(model, SHAPE, 4).eval(), SHAPE, 4, "sink",
                           config={"dataset": "digits"})
    result = export_loihi(source, tmp_path / "s.net", max_samples=20, min_agreement=0.0,
                          lava_samples=0)
    # independent count: the float membrane crosses -2**23 / (64 S) once it is below it
    scale = result.layers[0].scale
    x = _digits(20).flatten(1).double()
    h = -x.sum(1, keepdim=True) * torch.arange(1, 5).double()  # [N, T], same for all 4
    assert result.saturated > 0
    assert result.saturated >= 4 * int((h * scale * 64 < -(2 ** 23) * 1.01).sum())
    assert any("24-bit limit" in line for line in result.summary_lines())
    result.layers[1].quantization["bias_clipped"] = 0.25
    assert "  warning: biases clipped to 13 bits in 3 25.00%" in result.summary_lines()


def test_shrunk_scale_names_the_activation_register():
    """A readout of 70,000 small weights that round up to 2 and one large one: the weights
    limit comes first, the rounded sums then overflow and shrink the scale."""
    from neurokd.exporters.graph import trace_student
    from neurokd.exporters.loihi.export import loihi_chain, quantize

    model = nn.Sequential(layer.Flatten(step_mode="m"), layer.Linear(64, 70_000, step_mode="m"),
                          neuron.LIFNode(step_mode="m"),
                          layer.Linear(70_000, 2, bias=False, step_mode="m"))
    with torch.no_grad():
        model[3].weight.fill_(1.02 / 254)
        model[3].weight[:, 0] = 1.0
    wrapped = DirectEncoding(model, SHAPE, 2).eval()
    chain, _ = loihi_chain(trace_student(wrapped, SHAPE, 2))
    readout = quantize(chain, _digits(8), 2).layers[-1]
    assert readout.quantization["limit"] == "activation"
    assert readout.scale < 254  # below the weights limit it started from
    assert int(np.abs(readout.weight).sum(1).max()) <= 2 ** 17 - 1


def test_run_float_can_skip_the_spikes():
    stored_layers = read_netx(_user_net()).float_layers
    x = _digits(5)
    logits, spikes = run_float(stored_layers, x, 4)
    lean_logits, no_spikes = run_float(stored_layers, x, 4, keep_spikes=False)
    assert spikes and no_spikes == []
    np.testing.assert_array_equal(lean_logits, logits)


def _user_net() -> Path:
    import tempfile

    path = Path(tempfile.mkdtemp()) / "pooled.net"
    export_loihi(_user_models()["pooled"], path, min_agreement=0.5, lava_samples=0,
                 random_inputs=True)
    return path


def test_check_inputs_are_the_split_with_labels_and_random_only_when_asked(trained_run):
    from neurokd.errors import DataError
    from neurokd.student.inputs import source_inputs
    from neurokd.student.sources import load_source

    x, labels, described = source_inputs(load_source(trained_run / "student.pt"), "test", 30)
    test = load_data("digits").test
    assert torch.equal(x, test.tensors[0][:30].float())
    assert np.array_equal(labels, test.tensors[1][:30].numpy())
    assert described == "digits test split (30 samples)"
    with pytest.raises(DataError, match="--random-inputs"):  # a --model names no data set
        source_inputs(_user_models()["dense"], "test", 30)
    x, none, random = source_inputs(_user_models()["dense"], "test", 30, random=True)
    assert none is None and "random" in random and x.shape == (30, *SHAPE)
    seeded = torch.randn(30, *SHAPE, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, seeded)


def test_adaptive_pool_windows_shared_by_nir_and_loihi():
    from neurokd.exporters.loihi.pool_fold import adaptive_window

    assert adaptive_window((None, 2), 8, 6) == (1, 3)
    assert adaptive_window(2, 8, 8) == (4, 4)
    assert adaptive_window(3, 8, 8) is None  # uneven windows: neither exporter takes it


def test_missing_lava_fails_before_the_data_set_loads(trained_export, capsys, monkeypatch,
                                                      tmp_path):
    """A data set can take minutes to read: a missing Lava is said first (exit 1), but only
    after the input's own faults (a data set of the wrong shape is exit 2, before both)."""
    import neurokd.data

    def no_loading(*args, **kwargs):
        raise AssertionError("the data set was loaded before Lava was looked for")

    monkeypatch.setenv("NEUROKD_LAVA_PYTHON", str(tmp_path / "no-such-python"))
    monkeypatch.setattr(neurokd.data, "load_data", no_loading)
    outcome = run_cli(capsys, "simulate", str(trained_export[0]), "--dataset", "digits")
    assert_one_line_error(outcome, 1, "make lava")
    outcome = run_cli(capsys, "simulate", str(trained_export[0]), "--dataset", "cifar10",
                      "--data-dir", str(tmp_path / "no-cifar-here"))
    assert_one_line_error(outcome, 2, "cifar10 samples have shape (3, 32, 32)")


@requires_lava
def test_simulate_in_blocks_equals_one_pass(trained_export, tmp_path):
    """Blocks of 3 (the last one short) give what one block of 7 gives, to the last count."""
    from neurokd.exporters.simulation import write_result
    from neurokd.exporters.simulation.lava_backend import simulate_lava

    whole = simulate_lava(trained_export[0], samples=7, block=7)
    blocks = simulate_lava(trained_export[0], samples=7, block=3)
    differ = {"seconds_per_sample"}
    assert {k: v for k, v in blocks.to_json().items() if k not in differ} == \
        {k: v for k, v in whole.to_json().items() if k not in differ}
    assert sum(whole.spike_counts.values()) > 0
    write_result(tmp_path / "whole.npz", whole)
    write_result(tmp_path / "blocks.npz", blocks)
    with np.load(tmp_path / "whole.npz") as a, np.load(tmp_path / "blocks.npz") as b:
        assert a.files == b.files
        for key in a.files:
            assert np.array_equal(a[key], b[key]), key


def test_lava_environment_is_found_from_the_working_folder(tmp_path, monkeypatch):
    """NEUROKD_LAVA_PYTHON first, then .venv-lava in the working folder or above it (a
    checkout the user works in), whatever file the package itself was loaded from."""
    from neurokd.exporters.loihi import lava_host

    python = tmp_path / "checkout" / ".venv-lava" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    inside = tmp_path / "checkout" / "runs" / "demo"
    inside.mkdir(parents=True)
    monkeypatch.delenv("NEUROKD_LAVA_PYTHON", raising=False)
    monkeypatch.chdir(inside)
    monkeypatch.setattr(lava_host, "__file__", str(tmp_path / "site-packages" / "x.py"))
    assert lava_host.lava_python() == python
    monkeypatch.setenv("NEUROKD_LAVA_PYTHON", str(tmp_path / "other"))
    with pytest.raises(NeuroKDError, match="NEUROKD_LAVA_PYTHON"):
        lava_host.lava_python()
    monkeypatch.delenv("NEUROKD_LAVA_PYTHON")
    monkeypatch.chdir(tmp_path)
    python.unlink()
    with pytest.raises(NeuroKDError, match="make lava"):
        lava_host.lava_python()


def test_without_lava_the_export_stops_unless_the_check_is_skipped(trained_run, tmp_path,
                                                                   capsys, monkeypatch):
    """A file said to be checked in Lava that was not would be worse than an error: without a
    Lava environment the export is exit 1 with nothing written, and --no-lava-check says in
    the summary that Lava did not run."""
    monkeypatch.setenv("NEUROKD_LAVA_PYTHON", str(tmp_path / "no-such-python"))
    target = tmp_path / "student.net"
    outcome = run_cli(capsys, "export", "--target", "loihi", str(trained_run / "student.pt"),
                      "-o", str(target), "--check-samples", "16", "-q")
    assert_one_line_error(outcome, code=1,
                          contains="the Lava check of the written file cannot run")
    assert "--no-lava-check" in outcome.err and "make lava" in outcome.err
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary left
    outcome = run_cli(capsys, "export", "--target", "loihi", str(trained_run / "student.pt"),
                      "-o", str(target), "--check-samples", "16", "-q", "--no-lava-check")
    assert outcome.code == 0, outcome.err
    assert "not run in Lava: skipped as asked" in outcome.out
    assert read_netx(target).network.timesteps == torch.load(
        trained_run / "student.pt", weights_only=True)["config"]["timesteps"]
