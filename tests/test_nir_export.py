"""NIR export: the written file, read with nir.read and simulated, against spikingjelly itself."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

from neurokd.config import RunConfig
from neurokd.data import load_data
from neurokd.data.encoding import DirectEncoding
from neurokd.errors import NeuroKDError
from neurokd.exporters import export_nir, export_onnx, load_nir_simulator
from neurokd.models import build_student
from neurokd.student.nir.reader import read_nir
from neurokd.student.sources import StudentSource

from helpers import make_student, randomise_batchnorm

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def digits_x() -> torch.Tensor:
    return load_data("digits").test.tensors[0][:80]  # real images; 80 keep the test quick


def eager(model: nn.Module, x: torch.Tensor):
    spikes, hooks = {}, []
    for name, module in model.named_modules():
        if isinstance(module, neuron.BaseNode):
            hooks.append(module.register_forward_hook(
                lambda _m, _i, out, name=name: spikes.__setitem__(name, out)))
    functional.reset_net(model)
    with torch.no_grad():
        logits = model(x)
    functional.reset_net(model)
    for hook in hooks:
        hook.remove()
    return logits, spikes


def test_cnn_round_trip_folds_batchnorm_and_reproduces_outputs(tmp_path, digits_x):
    model, _ = make_student()
    path = tmp_path / "student.nir"
    source = StudentSource(model, SHAPE, 3, "s", {"dataset": "digits"})
    result = export_nir(source, path, max_samples=40)
    assert result.folded_batchnorm == ["features.1", "features.4", "features.7"]
    assert result.agreement.spike_mismatches == 0 and result.agreement.argmax_agreement == 1.0

    graph = nir.read(path)  # the file, not the in-memory graph; nir's type check passes
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    assert sorted(set(kinds.values())) == ["Affine", "Conv2d", "Flatten", "Input", "LIF", "Output"]
    lif, conv, flat = graph.nodes["features_2"], graph.nodes["features_0"], graph.nodes[
        "classifier_0"]
    dt = graph.metadata["dt"]
    assert dt == result.dt and int(graph.metadata["timesteps"]) == 3
    assert list(graph.metadata["input_shape"]) == [1, 8, 8]
    assert graph.metadata["dataset"] == "digits" and graph.metadata["producer"] == "neurokd"
    assert (int(flat.start_dim), int(flat.end_dim)) == (-3, -1)  # the same at any batch size
    np.testing.assert_allclose(lif.tau, 2.0 * dt)  # tau_c = tau * dt
    assert np.all(lif.r == 1.0) and np.all(lif.v_leak == 0.0) and np.all(lif.v_reset == 0.0)
    assert lif.tau.shape == (8, 8, 8)  # nir's type check needs the neuron shape
    bn = model.features[1]  # folding: w' = w * gamma / sqrt(var + eps)
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
    expected_w = model.features[0].weight.detach() * scale[:, None, None, None]
    np.testing.assert_allclose(conv.weight, expected_w.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(conv.bias, (bn.bias - bn.running_mean * scale).detach().numpy(),
                               rtol=1e-6, atol=1e-7)

    logits, spikes = load_nir_simulator(path, dt)(digits_x, 3)
    ref_logits, ref_spikes = eager(model, digits_x)
    assert torch.allclose(logits, ref_logits, rtol=0, atol=1e-4)
    assert torch.equal(logits.mean(0).argmax(-1), ref_logits.mean(0).argmax(-1))
    for name, ref in ref_spikes.items():
        assert torch.equal(spikes[name.replace(".", "_")], ref), name
        assert 0.01 < ref.mean() < 0.9, name


def test_residual_student_sums_edges_and_writes_a_sum_pool(tmp_path, digits_x):
    model = make_student(arch="resnet", width=4, timesteps=2, seed=2)[0]
    path = tmp_path / "resnet.nir"
    result = export_nir(model, path, input_shape=SHAPE, timesteps=2, random_inputs=True)
    graph = nir.read(path)
    into_act2 = [src for src, dst in graph.edges if dst == "layers_1_act2"]
    assert sorted(into_act2) == ["layers_1_conv2", "layers_1_shortcut_0"]  # NIR sums both
    out_of_block = [dst for src, dst in graph.edges if src == "layers_0_act2"]
    assert out_of_block == ["layers_1_conv1", "layers_1_shortcut_0"]  # main branch first
    pool = graph.nodes["pool"]  # AdaptiveAvgPool2d(1) over 2x2 -> SumPool2d(2), 1/4 moved on
    assert isinstance(pool, nir.SumPool2d) and list(pool.kernel_size) == [2, 2]
    assert result.sum_pools == ["pool"]
    np.testing.assert_allclose(graph.nodes["classifier_1"].weight,
                               model.classifier[1].weight.detach().numpy() / 4, rtol=1e-6)
    assert "BatchNorm" not in "".join(result.nodes.values())
    logits, _ = load_nir_simulator(path, result.dt)(digits_x, 2)
    ref_logits, ref_spikes = eager(model, digits_x)
    assert torch.allclose(logits, ref_logits, rtol=0, atol=1e-4)
    assert torch.equal(logits.mean(0).argmax(-1), ref_logits.mean(0).argmax(-1))
    assert all(s.mean() > 0.005 for s in ref_spikes.values())


def test_mnist1d_student_is_written_as_conv1d_and_reads_back(tmp_path):
    config = RunConfig(student="cnn", width=4, timesteps=3, dataset="mnist1d").to_dict()
    config |= {"input_shape": [1, 1, 40], "num_classes": 10}
    torch.manual_seed(0)
    model = randomise_batchnorm(build_student(config))
    path = tmp_path / "m1d.nir"
    source = StudentSource(model, (1, 1, 40), 3, "m1d", config)
    result = export_nir(source, path, random_inputs=True)
    assert result.one_dimensional
    graph = nir.read(path)  # nir 1.0.8 types a 1x3 Conv2d wrongly; Conv1d passes its check
    convs = [graph.nodes[f"features_{k}"] for k in (0, 3, 6)]
    assert all(isinstance(c, nir.Conv1d) for c in convs)
    bn = model.features[1]
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
    folded = model.features[0].weight.detach() * scale[:, None, None, None]  # (4, 1, 1, 3)
    np.testing.assert_allclose(convs[0].weight, folded[:, :, 0].numpy(), rtol=1e-6, atol=1e-7)
    assert list(graph.nodes["input"].input_type["input"]) == [1, 40]
    assert graph.nodes["features_2"].tau.shape == (4, 40)
    network = read_nir(path)  # back to the student's own (1, 1, 40) layout
    assert network.input_shape == (1, 1, 40) and network.timesteps == 3
    x = torch.randn(30, 1, 1, 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = network.model(x)
    ref, _ = eager(model, x)
    assert torch.allclose(ours, ref, rtol=0, atol=1e-4)


def test_non_square_kernels_are_refused_naming_the_layer(tmp_path):
    source = _user_source(layer.Conv2d(1, 4, (3, 1), padding=(1, 0), step_mode="m"),
                          neuron.LIFNode(step_mode="m"), layer.Flatten(step_mode="m"),
                          layer.Linear(4 * 8 * 8, 3, step_mode="m"))
    with pytest.raises(NeuroKDError, match=r"non-square Conv2d kernels .*: 0 \(kernel \(3, 1\)\)"):
        export_nir(source, tmp_path / "k.nir", random_inputs=True)
    assert list(tmp_path.iterdir()) == []


def test_soft_reset_is_refused_naming_layers(tmp_path):
    path = tmp_path / "soft.nir"
    with pytest.raises(NeuroKDError, match="soft reset") as info:
        export_nir(make_student(reset="soft")[0], path, input_shape=SHAPE, timesteps=3,
                   random_inputs=True)
    for name in ("features.2", "features.5", "features.8"):
        assert name in str(info.value)
    assert list(tmp_path.iterdir()) == []


def _user_source(*layers: nn.Module) -> StudentSource:
    return StudentSource(DirectEncoding(nn.Sequential(*layers), SHAPE, 2).eval(), SHAPE, 2, "u")


def test_maxpool_is_refused(tmp_path):
    source = _user_source(
        layer.Conv2d(1, 4, 3, padding=1, step_mode="m"), neuron.LIFNode(step_mode="m"),
        layer.MaxPool2d(2, step_mode="m"), layer.Flatten(step_mode="m"),
        layer.Linear(4 * 4 * 4, 3, step_mode="m"))
    with pytest.raises(NeuroKDError, match=r"2 \(max pooling"):
        export_nir(source, tmp_path / "m.nir", random_inputs=True)
    assert list(tmp_path.iterdir()) == []


def test_parametric_and_current_based_neurons_are_written(tmp_path):
    plif = neuron.ParametricLIFNode(init_tau=3.0, step_mode="m")
    with torch.no_grad():
        plif.w.fill_(-0.4)  # a learnt 1/tau = sigmoid(-0.4)
    cuba = neuron.CUBALIFNode(c_decay=0.6, v_decay=0.8, v_threshold=1.0)
    cuba.step_mode = "m"
    source = _user_source(layer.Flatten(step_mode="m"), layer.Linear(64, 32, step_mode="m"),
                          plif, layer.Linear(32, 16, step_mode="m"), cuba,
                          layer.Linear(16, 3, step_mode="m"))
    with torch.no_grad():
        source.model.model[1].weight.mul_(4)
        source.model.model[3].weight.mul_(4)
    result = export_nir(source, tmp_path / "p.nir", random_inputs=True)
    assert result.agreement.spike_mismatches == 0 and result.agreement.firing_rate > 0.05
    graph = nir.read(result.path)
    dt = result.dt
    np.testing.assert_allclose(graph.nodes["2"].tau, dt / torch.sigmoid(torch.tensor(-0.4)))
    cubalif = graph.nodes["4"]
    assert isinstance(cubalif, nir.CubaLIF)
    np.testing.assert_allclose(cubalif.tau_syn, dt / 0.4)  # dt / (1 - c_decay)
    np.testing.assert_allclose(cubalif.tau_mem, dt / 0.2)
    np.testing.assert_allclose(cubalif.w_in, 1 / 0.4)
    np.testing.assert_allclose(cubalif.r, 1 / 0.2)


def test_threshold_tie_is_caught_by_the_round_trip(tmp_path):
    """spikingjelly fires at h >= threshold, NIR at v > threshold: an input that lands exactly
    on the threshold is a real disagreement, so nothing may be written."""
    readout = layer.Linear(64, 4, step_mode="m")
    with torch.no_grad():
        readout.weight.zero_()
        readout.bias.fill_(2.0)  # h = (2 - 0) / tau = 1.0 = threshold at the first step
    source = _user_source(layer.Flatten(step_mode="m"), readout,
                          neuron.LIFNode(tau=2.0, step_mode="m"), layer.Linear(4, 3, step_mode="m"))
    target = tmp_path / "tie.nir"
    with pytest.raises(NeuroKDError, match="does not reproduce"):
        export_nir(source, target, random_inputs=True)
    assert not target.exists() and list(tmp_path.iterdir()) == []
    onnx_result = export_onnx(source, tmp_path / "tie.onnx", exporter="torchscript", random_inputs=True)  # >= in ONNX too
    assert onnx_result.agreement.firing_rate > 0
