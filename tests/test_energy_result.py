"""The simulate result file (``neurokd.energy.spike_counts``): sizes checked on read, one writer for
every backend, a chain of layers or a refusal by name, and the energy report around it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import layer, neuron
from torch import nn

from neurokd.data.encoding import DirectEncoding
from neurokd.energy import LayerGeometry, count_events, read_spike_counts, write_spike_counts
from neurokd.errors import NeuroKDError

from helpers import assert_one_line_error, requires_lava, run_cli


def _chain_net(pool: bool = False) -> DirectEncoding:
    """conv -> IF -> [avg pool] -> conv -> IF -> [avg pool] -> linear, on 1x8x8, T=3."""
    torch.manual_seed(0)
    def pools() -> list[nn.Module]:
        return [layer.AvgPool2d(2, step_mode="m")] if pool else []

    side = 2 if pool else 8
    net = nn.Sequential(
        layer.Conv2d(1, 6, 3, padding=1, step_mode="m"), neuron.IFNode(step_mode="m"), *pools(),
        layer.Conv2d(6, 8, 3, padding=1, step_mode="m"), neuron.IFNode(step_mode="m"), *pools(),
        layer.Flatten(step_mode="m"), layer.Linear(8 * side * side, 10, step_mode="m"))
    with torch.no_grad():  # enough drive for both neuron layers to spike
        net[0].weight.mul_(4.0)
        net[3 if pool else 2].weight.mul_(4.0)
    return DirectEncoding(net, (1, 8, 8), 3)


@pytest.fixture(scope="module")
def good_result(tmp_path_factory):
    """A result file written from a float count of a small chain network."""
    folder = tmp_path_factory.mktemp("result")
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    counts = count_events(_chain_net(), x, (1, 8, 8))
    return write_spike_counts(folder / "good.npz", counts, backend="lava"), counts


def _damaged(good, folder, name: str, **changes) -> str:
    with np.load(good, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    arrays |= {key: np.asarray(value) for key, value in changes.items()}
    np.savez(folder / name, **arrays)
    return str(folder / name)


# conv geometry: [out, in/groups, kH, kW, sH, sW, pH, pW, dH, dW, groups]; layer 0 reads 1x8x8
BAD_GEOMETRIES = [
    ("kernel20", [6, 1, 20, 20, 1, 1, 1, 1, 1, 1, 1], "does not fit the input"),
    ("stride0", [6, 1, 3, 3, 0, 1, 1, 1, 1, 1, 1], "stride (0, 1)"),
    ("dilation0", [6, 1, 3, 3, 1, 1, 1, 1, 0, 0, 1], "dilation (0, 0)"),
    ("padding-1", [6, 1, 3, 3, 1, 1, -1, 1, 1, 1, 1], "padding (-1, 1) >= 0"),
    ("out0", [0, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1], "0 outputs"),
]


@pytest.mark.parametrize("name, geometry, contains", BAD_GEOMETRIES)
def test_impossible_geometry_is_one_line(good_result, tmp_path, capsys, name, geometry,
                                         contains):
    path = _damaged(good_result[0], tmp_path, f"{name}.npz",
                    geometry_0=np.array(geometry, dtype=np.int64))
    outcome = run_cli(capsys, "energy", "report", "--from-lava", path, "--json",
                      str(tmp_path / "e.json"))
    assert_one_line_error(outcome, 2, contains)
    assert "layer 0" in outcome.err and not (tmp_path / "e.json").exists()


def test_geometry_sizes_by_hand():
    # The largest kernel that fits: 8 + 2*1 padded rows, kernel 10 -> one output row.
    edge = LayerGeometry("conv", (1, 8, 8), 4, 1, (10, 10), (1, 1), (1, 1))
    assert edge.output_shape == (4, 1, 1) and edge.macs_per_frame == 100 * 4
    for bad in ({"kernel": (11, 11), "padding": (1, 1)}, {"stride": (1, 0)},
                {"groups": 0}, {"dilation": (1, -1)}):
        with pytest.raises(ValueError):
            LayerGeometry("conv", (1, 8, 8), 4, 1, **{"kernel": (3, 3)} | bad)
    with pytest.raises(ValueError):
        LayerGeometry("dense", (0,), 4, 0)


def test_output_spikes_and_has_neurons_are_checked(good_result, tmp_path, capsys):
    good, counts = good_result
    assert counts.layers[0].output_spikes.shape == (6, 8, 8)
    cases = [
        (_damaged(good, tmp_path, "three.npz", output_spikes_0=np.ones(3)),
         "output_spikes_0 has shape (3,)"),
        (_damaged(good, tmp_path, "two.npz", has_neurons_0=np.array([1, 1])),
         "has_neurons_0 must be one integer"),
        (_damaged(good, tmp_path, "half.npz", has_neurons_0=np.array(0.5)),
         "has_neurons_0 must be one integer"),
        (_damaged(good, tmp_path, "seven.npz", has_neurons_0=np.array(7)),
         "has_neurons_0 must be 0 or 1"),
    ]
    for path, contains in cases:
        outcome = run_cli(capsys, "energy", "report", "--from-lava", path, "-q")
        assert_one_line_error(outcome, 2, contains)
    read, backend = read_spike_counts(good)  # the untouched file still reads, counts intact
    assert backend == "lava" and read.layers[0].neuron_updates == 6 * 64 * 6 * 3


def test_a_file_under_the_formats_first_name_reads_the_same(good_result, tmp_path):
    good, _ = good_result
    legacy = _damaged(good, tmp_path, "old.npz", format=np.array("neurokd.lava-result"))
    (old, old_backend), (new, new_backend) = read_spike_counts(legacy), read_spike_counts(good)
    assert old_backend == new_backend == "lava"
    _same_counts(old, new)


def test_writer_refuses_what_the_reader_would(tmp_path):
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    counts = count_events(_chain_net(), x, (1, 8, 8))
    counts.layers[0].output_spikes = counts.layers[0].output_spikes[:3]
    with pytest.raises(NeuroKDError, match="do not fit its output"):
        write_spike_counts(tmp_path / "r.npz", counts)
    assert not list(tmp_path.iterdir())


def test_zero_cost_mac_profile_prints_a_dash(trained_run, tmp_path, capsys):
    """A profile may price MACs at 0 pJ: the ANN then costs nothing and there is no ratio."""
    (tmp_path / "free.toml").write_text(
        'name = "free-macs"\nmac_pj = 0\nsynop_pj = 0.5\nneuron_update_pj = 1\n'
        'active_neuron_update_pj = 1\nsource = "a test"\n')
    outcome = run_cli(capsys, "energy", "report", str(trained_run / "student.pt"), "--samples",
                      "20", "--profile", str(tmp_path / "free.toml"), "--json",
                      str(tmp_path / "e.json"), "-q")
    assert outcome.code == 0, outcome.err
    ratio_row = next(line for line in outcome.out.splitlines() if "SNN / ANN energy" in line)
    assert "—" in ratio_row
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["ann_energy_pj"] == 0 and data["ratio"] is None


def test_what_cannot_be_counted_or_exported_is_one_error():
    from neurokd.energy import estimate
    from neurokd.exporters import export_onnx
    from neurokd.student.sources import as_source

    with pytest.raises(NeuroKDError, match="cannot count a int"):
        estimate(3, torch.zeros(1, 1, 8, 8))
    with pytest.raises(NeuroKDError, match="cannot export a int"):
        export_onnx(3, "never.onnx")
    # counting takes the shape from the inputs; exporting a bare module needs it given
    bare = nn.Sequential(layer.Flatten(step_mode="m"), layer.Linear(4, 2, step_mode="m"))
    assert as_source(bare, purpose="count").input_shape == ()
    with pytest.raises(NeuroKDError, match="needs input_shape"):
        as_source(bare)


def test_estimate_from_options_prices_a_spike_count_file_beside_the_float_run(trained_run,
                                                                              tmp_path):
    """The library call behind `energy report CHECKPOINT --from-sim FILE`: the float estimate
    runs on as many test samples as the file counted, and both reuse one ANN reference."""
    import neurokd
    from neurokd.data import load_data
    from neurokd.energy import estimate_from_options, price_spike_counts
    from neurokd.student.sources import load_source

    source = load_source(checkpoint=trained_run / "student.pt")
    run = neurokd.load(trained_run / "student.pt")
    counts = count_events(run.student, load_data("digits").test.tensors[0][:12], (1, 8, 8))
    result_file = write_spike_counts(tmp_path / "r.npz", counts)
    result = estimate_from_options(source, "loihi", "twin", spike_counts=result_file)
    assert result.samples == result.deployed.samples == 12
    assert result.deployed.snn_energy_pj == pytest.approx(result.snn_energy_pj)
    assert result.deployed.ann_layers == result.ann_layers
    alone = price_spike_counts(result_file, "loihi", reference=result)
    assert alone.to_dict() == result.deployed.to_dict()


@pytest.fixture(scope="module")
def onnx_exports(tmp_path_factory):
    """ONNX exports (with spikes) of the chain network and of its pooled variant."""
    from neurokd.exporters import export_onnx

    folder = tmp_path_factory.mktemp("onnx")
    export_onnx(_chain_net(), folder / "chain.onnx", spike_outputs=True, max_samples=16,
                random_inputs=True)
    export_onnx(_chain_net(pool=True), folder / "pooled.onnx", spike_outputs=True,
                max_samples=16, random_inputs=True)
    return folder


@pytest.mark.slow
def test_onnx_pool_between_layers_is_refused_before_running(onnx_exports, tmp_path, capsys):
    outcome = run_cli(capsys, "simulate", "--backend", "onnx", str(onnx_exports / "pooled.onnx"),
                      "--dataset", "digits", "-q", "--save", str(tmp_path / "r.npz"))
    # the second conv reads the pooled (6, 4, 4) map while the chain feeds it the (6, 8, 8)
    # spikes before the pool: its outputs (8, 8, 8) and its neurons' (8, 4, 4) disagree, and the
    # file is refused naming the layer, in one line, before anything is written
    assert_one_line_error(outcome, 2, "not in the result file's chain of layers")
    # the layer under its module path (the export records it: neurokd.layer_names)
    assert "after 3 gives" in outcome.err and "(8, 4, 4)" in outcome.err
    assert not (tmp_path / "r.npz").exists()


@pytest.mark.slow
def test_onnx_metadata_missing_or_broken_is_one_line(onnx_exports, tmp_path, capsys):
    import onnx

    cases = [("no_t.onnx", {"neurokd.timesteps": None}, "lacks the metadata neurokd.timesteps"),
             ("bad_t.onnx", {"neurokd.timesteps": "four"}, "are not a number and a shape"),
             ("bad_shape.onnx", {"neurokd.input_shape": "(1, 8"}, "are not a number and a shape"),
             ("zero_t.onnx", {"neurokd.timesteps": "0"}, "must be in 1..")]
    for name, changes, contains in cases:
        model = onnx.load(onnx_exports / "chain.onnx")
        props = {p.key: p.value for p in model.metadata_props} | changes
        del model.metadata_props[:]
        onnx.helper.set_model_props(model, {k: v for k, v in props.items() if v is not None})
        onnx.save(model, tmp_path / name)
        outcome = run_cli(capsys, "simulate", "--backend", "onnx", str(tmp_path / name),
                          "--dataset", "digits", "-q", "--save", str(tmp_path / "r.npz"))
        assert_one_line_error(outcome, 2, contains)
        assert not (tmp_path / "r.npz").exists()


def _same_counts(a, b) -> None:
    assert (a.samples, a.timesteps) == (b.samples, b.timesteps)
    for x, y in zip(a.layers, b.layers, strict=True):
        assert (x.name, x.geometry, x.frames, x.neuron_updates) == \
            (y.name, y.geometry, y.frames, y.neuron_updates)
        assert np.array_equal(x.input_events, y.input_events)
        assert (x.output_spikes is None) == (y.output_spikes is None)
        if x.output_spikes is not None:
            assert np.array_equal(x.output_spikes, y.output_spikes)


@pytest.mark.slow
def test_onnx_run_is_written_by_the_one_writer(onnx_exports, tmp_path):
    from neurokd.data import load_data
    from neurokd.exporters.simulation import simulate, write_result

    result = simulate(onnx_exports / "chain.onnx", "onnx", "digits", samples=10)
    written = write_result(tmp_path / "r.npz", result)
    direct = write_spike_counts(tmp_path / "direct.npz", result.counts, "onnx", "digits")
    with np.load(written) as a, np.load(direct) as b:
        assert sorted(a.files) == sorted(b.files)
        assert all(np.array_equal(a[key], b[key]) for key in a.files)
    counts, backend = read_spike_counts(written)
    assert backend == "onnx"
    _same_counts(counts, result.counts)
    # an independent count: the same student and samples in spikingjelly
    x = load_data("digits").test.tensors[0][:10]
    floats = count_events(_chain_net(), x, (1, 8, 8))
    for ours, theirs in zip(counts.layers, floats.layers, strict=True):
        assert ours.geometry == theirs.geometry
        assert np.array_equal(ours.input_events, theirs.input_events)


def test_quantized_layer_geometry_is_the_energy_geometry(tmp_path):
    """Pools folded into the next conv/linear: the geometry must still give each layer's
    output shape, as the exporter computed it."""
    from neurokd.exporters import export_loihi
    from neurokd.exporters.loihi.netx_file import read_netx

    export_loihi(_chain_net(pool=True), tmp_path / "p.net", max_samples=32, lava_samples=0,
                 random_inputs=True)
    geometries = [lay.geometry for lay in read_netx(tmp_path / "p.net").network.layers]
    assert all(isinstance(g, LayerGeometry) for g in geometries)
    # by hand: conv 3x3 pad 1 on 1x8x8; the 2x2 average pool folded into the next 3x3 conv
    # (a 6x6 kernel of stride 2, padding 2: (8 + 4 - 6) / 2 + 1 = 4); the second pool folded
    # into the linear, which reads the unpooled 8x4x4 map
    assert [g.input_shape for g in geometries] == [(1, 8, 8), (6, 8, 8), (8 * 4 * 4,)]
    assert [g.output_shape for g in geometries] == [(6, 8, 8), (8, 4, 4), (10,)]
    assert geometries[1].to_array().tolist() == [8, 6, 6, 6, 2, 2, 2, 2, 1, 1, 1]


@requires_lava
def test_lava_run_of_a_folded_pool_network(tmp_path, capsys):
    from neurokd.exporters import export_loihi
    from neurokd.exporters.simulation import simulate, write_result

    export_loihi(_chain_net(pool=True), tmp_path / "p.net", max_samples=32, lava_samples=0,
                 random_inputs=True)
    result = simulate(tmp_path / "p.net", dataset="digits", samples=8)
    assert result.agreement == 1.0 and set(result.identical_spikes.values()) == {1.0}
    counts, backend = read_spike_counts(write_result(tmp_path / "r.npz", result))
    assert backend == "lava"
    _same_counts(counts, result.counts)
    spiking = [lay for lay in counts.layers if lay.output_spikes is not None]
    assert [int(lay.output_spikes.sum()) for lay in spiking] == \
        list(result.spike_counts.values())
    outcome = run_cli(capsys, "energy", "report", "--from-sim", str(tmp_path / "r.npz"), "-q")
    assert outcome.code == 0, outcome.err
