"""NIR in: networks built and exported by snnTorch, Norse and spikingjelly, read by neurokd.

Each network is built in its own framework, run there for T steps (the independent
computation), exported with that framework's own NIR writer, read back by
``neurokd.student.nir.reader.read_nir`` and run as a spikingjelly model: the outputs must be the
framework's own, spike for spike. The read network then goes on to ONNX, Loihi (integer model
and Lava) and the energy report like any checkpoint.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import nir
import numpy as np
import pytest
import torch
from torch import nn

from neurokd.errors import NeuroKDError
from neurokd.exporters import export_loihi, export_onnx
from neurokd.student.nir.reader import read_nir
from neurokd.student.sources import StudentSource, load_source

from helpers import requires_lava, run_cli

T = 6


def _quiet_export(export, *args, **kwargs):
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return export(*args, **kwargs)


def _snntorch_conv_net() -> nn.Module:
    """conv -> Leaky -> flatten -> linear -> Leaky, per-neuron tensors (snnTorch's exporter
    writes scalar betas as shape-() arrays that nir's type check rejects)."""
    import snntorch as snn

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        snn.Leaky(beta=torch.full((4, 8, 8), 0.8), threshold=torch.ones(4, 8, 8),
                  init_hidden=True, reset_mechanism="zero"),
        nn.Flatten(), nn.Linear(256, 10),
        snn.Leaky(beta=torch.full((10,), 0.7), threshold=torch.ones(10), init_hidden=True,
                  output=True, reset_mechanism="zero"))
    with torch.no_grad():
        net[3].weight.mul_(4)
        net[3].bias.add_(0.3)
    return net


def _snntorch_run(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    import snntorch.utils

    snntorch.utils.reset(net)
    with torch.no_grad():
        out = torch.stack([net(x)[0] for _ in range(T)])
    snntorch.utils.reset(net)
    return out


@pytest.fixture(scope="module")
def snntorch_file(tmp_path_factory):
    from snntorch.export_nir import export_to_nir

    net = _snntorch_conv_net()
    graph = _quiet_export(export_to_nir, net, torch.rand(1, 1, 8, 8), ignore_dims=[0])
    path = tmp_path_factory.mktemp("snntorch") / "snn.nir"
    nir.write(path, graph)
    x = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 3
    return path, x, _snntorch_run(net, x)


def test_snntorch_network_reads_back_spike_for_spike(snntorch_file):
    path, x, expected = snntorch_file
    network = read_nir(path, timesteps=T)  # snnTorch writes no metadata: T is given
    assert network.input_shape == (1, 8, 8) and network.dt == 1e-4
    with torch.no_grad():
        got = network.model(x)
    assert 0.05 < float(expected.mean()) < 0.9  # the output layer really spikes
    assert torch.equal(got, expected)
    lif = network.model.model.get_submodule(network.layers["1"])
    assert lif.decay_input is False and lif.tau == pytest.approx(5.0)  # r = tau/dt: 1/(1-beta)


@pytest.mark.slow  # the ONNX export
def test_snntorch_synaptic_network_reads_as_cuba_lif_and_exports_to_onnx(tmp_path):
    """snnTorch's Synaptic is NIR's CubaLIF; with ``reset_delay=False`` (what snnTorch's own
    importer builds) its dynamics are the NIR graph's."""
    import snntorch as snn
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)

    def synaptic(n: int, alpha: float, beta: float, **kw):
        return snn.Synaptic(alpha=torch.full((n,), alpha), beta=torch.full((n,), beta),
                            threshold=torch.ones(n), init_hidden=True, reset_mechanism="zero",
                            reset_delay=False, **kw)

    net = nn.Sequential(nn.Linear(20, 16), synaptic(16, 0.6, 0.8), nn.Linear(16, 5),
                        synaptic(5, 0.5, 0.7, output=True))
    with torch.no_grad():
        net[0].weight.mul_(2)
        net[2].weight.mul_(2)
    x = torch.rand(32, 20, generator=torch.Generator().manual_seed(2))
    expected = _snntorch_run(net, x)
    graph = _quiet_export(export_to_nir, net, torch.rand(1, 20), ignore_dims=[0])
    nir.write(tmp_path / "cuba.nir", graph)
    network = read_nir(tmp_path / "cuba.nir", timesteps=T)
    with torch.no_grad():
        got = network.model(x)
    assert 0.05 < float(expected.mean()) < 0.9
    assert torch.equal(got, expected)
    source = StudentSource(network.model, network.input_shape, T, "cuba")
    result = export_onnx(source, tmp_path / "cuba.onnx", random_inputs=True)
    assert result.agreement.spike_mismatches == 0 and result.agreement.firing_rate > 0.05


def test_norse_network_reads_back_with_its_convention(tmp_path):
    import norse.torch as norse

    torch.manual_seed(0)
    net = norse.SequentialState(nn.Linear(20, 16), norse.LIFBoxCell(), nn.Linear(16, 5),
                                norse.LIFBoxCell())
    with torch.no_grad():
        net[0].weight.mul_(10)
        net[0].bias.add_(4.0)
        net[2].weight.mul_(6)
        net[2].bias.add_(3.0)
    x = torch.rand(32, 20, generator=torch.Generator().manual_seed(3))
    state, outputs = None, []
    with torch.no_grad():
        for _ in range(T):
            out, state = net(x, state)
            outputs.append(out)
    expected = torch.stack(outputs)
    logging.disable(logging.WARNING)
    try:
        graph = _quiet_export(norse.to_nir, net, torch.rand(1, 20))
    finally:
        logging.disable(logging.NOTSET)
    path = tmp_path / "norse.nir"
    nir.write(path, graph, compression=None)  # Norse's shape-() arrays cannot be gzipped
    with pytest.raises(NeuroKDError, match=r"node '1' \(LIF\): tau = 1e-05 s is 0.1 steps .*"
                                           "--nir-convention norse"):
        read_nir(path, timesteps=T)  # read as the spec says, Norse's tau = dt * tau_mem
    network = read_nir(path, timesteps=T, convention="norse")
    assert network.input_shape == (20,)  # Norse writes the batch axis into the Input type
    assert any("batch axis" in note for note in network.notes)
    with torch.no_grad():
        got = network.model(x)
    assert 0.05 < float(expected.mean()) < 0.9
    assert torch.equal(got, expected)


def test_spikingjelly_network_reads_back_spike_for_spike(tmp_path):
    from spikingjelly.activation_based import functional, layer, neuron
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    torch.manual_seed(0)
    net = nn.Sequential(layer.Conv2d(1, 4, 3, padding=1), neuron.LIFNode(tau=2.0),
                        layer.AvgPool2d(2), layer.Flatten(), layer.Linear(64, 10),
                        neuron.IFNode())
    with torch.no_grad():
        net[4].weight.mul_(4)
        net[4].bias.add_(0.2)
    functional.set_step_mode(net, "m")
    x = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(4)) * 3
    functional.reset_net(net)
    with torch.no_grad():
        expected = net(x.unsqueeze(0).repeat(T, 1, 1, 1, 1))
    functional.reset_net(net)
    functional.set_step_mode(net, "s")
    nir.write(tmp_path / "sj.nir", _quiet_export(export_to_nir, net, torch.rand(1, 1, 8, 8)))
    network = read_nir(tmp_path / "sj.nir", timesteps=T)
    with torch.no_grad():
        got = network.model(x)
    assert 0.05 < float(expected.mean()) < 0.9
    assert torch.equal(got, expected)


@requires_lava
def test_snntorch_network_to_loihi_runs_in_lava_like_the_integer_model(snntorch_file, tmp_path):
    path, _, _ = snntorch_file
    source = load_source(path, timesteps=T)
    result = export_loihi(source, tmp_path / "snn.net", random_inputs=True, max_samples=64,
                          lava_samples=16)  # raises unless Lava's spikes equal the model's
    assert result.lava_samples == 16 and not result.lava_skipped
    assert result.agreement.firing_rate > 0.05


@pytest.mark.slow  # an ONNX export and an energy report
def test_nir_file_is_a_source_for_export_and_energy(snntorch_file, tmp_path, capsys):
    path, _, _ = snntorch_file
    out = tmp_path / "snn.onnx"
    outcome = run_cli(capsys, "export", "--target", "onnx", str(path), "--timesteps", str(T),
                      "--random-inputs", "--check-samples", "16", "-o", str(out), "--quiet")
    assert outcome.code == 0, outcome.err
    assert out.exists() and "spikes identical" in outcome.out
    outcome = run_cli(capsys, "energy", "report", str(path), "--timesteps", str(T),
                      "--random-inputs", "--samples", "16", "--ann", "twin", "--quiet")
    assert outcome.code == 0, outcome.err
    assert "SNN / ANN" in outcome.out or "ratio" in outcome.out.lower(), outcome.out


def test_neurokd_nir_export_names_its_data_set(tmp_path, capsys):
    """A neurokd NIR export records its data set and T: no --dataset or --timesteps needed."""
    from neurokd.exporters import export_nir

    from helpers import make_student

    model, _ = make_student()
    source = StudentSource(model, (1, 8, 8), 3, "s", {"dataset": "digits"})
    export_nir(source, tmp_path / "s.nir", max_samples=16)
    loaded = load_source(tmp_path / "s.nir")
    assert loaded.timesteps == 3 and loaded.config == {"dataset": "digits"}
    outcome = run_cli(capsys, "energy", "report", str(tmp_path / "s.nir"), "--samples", "16",
                      "--quiet")
    assert outcome.code == 0, outcome.err
    assert "digits test split" in outcome.out


def _graph(**nodes) -> nir.NIRGraph:
    names = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names, names[1:], strict=False)),
                        type_check=False)


def _lif(n: int, **values) -> nir.LIF:
    p = dict(tau=np.full(n, 5e-4), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n),
             v_reset=np.zeros(n))
    return nir.LIF(**(p | {k: np.asarray(v, dtype=np.float64) for k, v in values.items()}))


def _dense(n_in: int, n_out: int) -> nir.Affine:
    return nir.Affine(np.ones((n_out, n_in), np.float32), np.zeros(n_out, np.float32))


@pytest.mark.parametrize("lif, message", [
    (_lif(4, tau=[5e-4, 5e-4, 6e-4, 5e-4]), r"node 'lif' \(LIF\): per-neuron tau"),
    (_lif(4, v_leak=np.full(4, 0.2)), r"v_leak = 0.2 != v_reset = 0"),
    (_lif(4, tau=np.full(4, 5e-5)), r"0.5 steps of dt"),
    (_lif(5), r"node 'lif' \(LIF\): \w+ has shape \(5,\), its input \(4,\)"),
])
def test_neurons_neurokd_cannot_take_are_refused_by_name(lif, message):
    graph = _graph(input=nir.Input(input_type={"input": np.array([3])}), fc=_dense(3, 4),
                   lif=lif, output=nir.Output(output_type={"output": np.array([4])}))
    with pytest.raises(NeuroKDError, match=message):
        read_nir(graph, timesteps=2)


def test_an_oversized_input_is_refused_before_anything_is_built():
    graph = _graph(input=nir.Input(input_type={"input": np.array([4096, 4096, 4096])}),
                   output=nir.Output(output_type={"output": np.array([1])}))
    with pytest.raises(NeuroKDError, match=r"node 'input' would hold per-sample shape "
                                           r"\(4096, 4096, 4096\)"):
        read_nir(graph, timesteps=2)


def test_an_unfoldable_scale_is_refused():
    """IF with r = 1 (not 1/dt) scales its input by dt; straight after the Input node there
    is no synapse to fold that into."""
    graph = _graph(input=nir.Input(input_type={"input": np.array([3])}),
                   spikes=nir.IF(r=np.ones(3), v_threshold=np.ones(3), v_reset=np.zeros(3)),
                   output=nir.Output(output_type={"output": np.array([3])}))
    with pytest.raises(NeuroKDError, match=r"node 'spikes' \(IF\) scales its input by 0.0001.*"
                                           "straight from input"):
        read_nir(graph, timesteps=2)


def test_snntorch_recurrent_layer_is_refused_naming_the_edge(tmp_path):
    import snntorch as snn
    from snntorch.export_nir import export_to_nir

    net = nn.Sequential(nn.Linear(4, 3), snn.RLeaky(beta=torch.full((3,), 0.9),
                                                    threshold=torch.ones(3), linear_features=3,
                                                    init_hidden=True, output=True))
    graph = _quiet_export(export_to_nir, net, torch.rand(1, 4), ignore_dims=[0])
    path = tmp_path / "rec.nir"
    nir.write(path, graph)
    with pytest.raises(NeuroKDError, match=r"recurrent edge 1.w_rec -> 1.lif \(a cycle"):
        read_nir(path, timesteps=2)


def test_cuba_lif_is_refused_by_loihi_naming_the_layer():
    """neurokd writes Loihi's CUBA neuron without current memory: a CubaLIF read from NIR must
    not be taken for a LIF there (ONNX and NIR take it)."""
    from neurokd.exporters import EXPORTERS
    from neurokd.exporters.graph import trace_student

    n = 4
    cuba = nir.CubaLIF(tau_syn=np.full(n, 4e-4), tau_mem=np.full(n, 5e-4), r=np.full(n, 5.0),
                       v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n),
                       w_in=np.full(n, 4.0))
    graph = _graph(input=nir.Input(input_type={"input": np.array([3])}), fc=_dense(3, n),
                   syn=cuba, out=_dense(n, 2),
                   output=nir.Output(output_type={"output": np.array([2])}))
    network = read_nir(graph, timesteps=3)
    cell = network.model.model.syn
    assert cell.c_decay == pytest.approx(0.75) and cell.v_decay == pytest.approx(0.8)
    records = trace_student(network.model, network.input_shape, 3)
    assert EXPORTERS["onnx"].limits(records) == [] and EXPORTERS["nir"].limits(records) == []
    assert EXPORTERS["loihi"].limits(records) == [
        "syn (CUBALIFNode: neurokd writes Loihi's CUBA neuron without current memory (iDecay "
        "4096), so only LIF and IF map onto it)"]


def _damage(path, change) -> None:
    import h5py

    with h5py.File(path, "r+") as handle:
        change(handle)


def _compressed_giant(handle) -> None:
    """A 40 GB weight array that gzip packs into a few kB: refused from its header."""
    node = handle["node/nodes/fc"]
    del node["weight"]
    node.create_dataset("weight", shape=(100_000, 100_000), dtype="f4", compression="gzip")


@pytest.mark.parametrize("change, message", [
    (_compressed_giant, "reading its arrays would need 74.51 GiB"),
    (lambda h: h["node/nodes/fc"].__delitem__("weight"), "nir.read fails: TypeError"),
    (lambda h: h["node/nodes/fc"].__delitem__("type"), "node 'fc' has type None"),
])
def test_damaged_nir_files_are_refused_before_anything_is_built(tmp_path, change, message,
                                                                 monkeypatch):
    monkeypatch.setenv("NEUROKD_MAX_MEMORY", "8G")
    graph = _graph(input=nir.Input(input_type={"input": np.array([3])}), fc=_dense(3, 4),
                   lif=_lif(4), output=nir.Output(output_type={"output": np.array([4])}))
    path = tmp_path / "g.nir"
    nir.write(path, graph)
    read_nir(path, timesteps=2)  # the undamaged file reads
    _damage(path, change)
    with pytest.raises(NeuroKDError, match=message):
        read_nir(path, timesteps=2)
