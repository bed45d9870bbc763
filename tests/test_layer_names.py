"""One layer, one name (docs/formats.md, "Layer names"): a conv/linear with the neurons after it,
named by the conv/linear's module path, the same in every place that shows per-layer numbers."""

from __future__ import annotations

import json

from neurokd.energy import estimate
from neurokd.exporters.loihi.netx_file import read_netx
from neurokd.exporters.simulation import simulate
from neurokd.student.layers import neuron_layers, spike_labels

DEMO_LAYERS = ["features.0", "features.3", "features.6", "classifier.1"]  # the digits cnn
SPIKING = DEMO_LAYERS[:-1]  # the readout has no neurons


def test_every_place_names_the_same_layers(trained_run, trained_exports):
    # ONNX Runtime (neurokd simulate --backend onnx): the layers and their spike counts
    onnx = simulate(trained_exports / "student-spikes.onnx", samples=8)
    # the Lava export (no Lava run): the netx file's layers, the spiking ones
    netx = read_netx(trained_exports / "student.net")
    lava = [lay.name for lay in netx.network.layers]
    lava_spiking = [lay.name for lay in netx.network.layers if lay.spiking]
    # energy report: its layers, those whose neurons fire (an output rate)
    energy = estimate(trained_run / "student.pt", digits_inputs(), "loihi", ann="none")
    energy_spiking = [lay.name for lay in energy.layers if lay.output_firing_rate is not None]
    # the training history (metrics.json, the training log's CSV / TensorBoard and plot)
    history = json.loads((trained_run / "metrics.json").read_text())["history"]
    trained = list(history[-1]["layer_firing_rates"])

    assert onnx.layer_names == lava == netx.meta["layer_names"] == \
        [lay.name for lay in energy.layers] == DEMO_LAYERS
    assert list(onnx.spike_counts) == lava_spiking == energy_spiking == sorted(trained) == \
        SPIKING


def digits_inputs():
    from neurokd.data import load_data

    return load_data("digits").test.tensors[0][:8]


def test_a_neuron_belongs_to_the_synaptic_module_that_ran_last_before_it():
    order = [("stem.0", True), ("stem.2", False),                  # conv, (bn), neurons
             ("block.conv1", True), ("block.sn1", False),
             ("block.conv2", True), ("block.down", True), ("block.sn2", False),  # after an add
             ("head", True)]
    assert neuron_layers(order) == {"stem.2": "stem.0", "block.sn1": "block.conv1",
                                    "block.sn2": "block.down"}
    # neurons before any synapse are a layer of their own; two after one synapse keep theirs
    layers = neuron_layers([("enc", False), ("fc", True), ("a", False), ("b", False)])
    assert spike_labels(layers) == {"enc": "enc", "a": "a", "b": "b"}
