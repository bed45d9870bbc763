"""NIR export: the written file, read with nir.read and simulated, against spikingjelly itself."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

from neurokd.data import load_data
from neurokd.encoding import DirectEncoding
from neurokd.errors import NeuroKDError
from neurokd.exporters import export_nir, export_onnx, import_nir
from neurokd.sources import StudentSource

from helpers import make_student

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def digits_x() -> torch.Tensor:
    return load_data("digits").test.tensors[0][:150]  # real images; 150 keep the test quick


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
    result = export_nir(model, path, input_shape=SHAPE, timesteps=3, random_inputs=True)
    assert result.folded_batchnorm == ["features.1", "features.4", "features.7"]
    assert result.agreement.spike_mismatches == 0 and result.agreement.argmax_agreement == 1.0

    graph = nir.read(path)  # the file, not the in-memory graph
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    assert sorted(set(kinds.values())) == ["Affine", "Conv2d", "Flatten", "Input", "LIF", "Output"]
    lif, conv = graph.nodes["features_2"], graph.nodes["features_0"]
    dt = graph.metadata["dt"]
    assert dt == result.dt and int(graph.metadata["timesteps"]) == 3
    np.testing.assert_allclose(lif.tau, 2.0 * dt)  # tau_c = tau * dt
    assert np.all(lif.r == 1.0) and np.all(lif.v_leak == 0.0) and np.all(lif.v_reset == 0.0)
    assert lif.tau.shape == (8, 8, 8)
    bn = model.features[1]  # folding: w' = w * gamma / sqrt(var + eps)
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
    expected_w = model.features[0].weight.detach() * scale[:, None, None, None]
    np.testing.assert_allclose(conv.weight, expected_w.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(conv.bias, (bn.bias - bn.running_mean * scale).detach().numpy(),
                               rtol=1e-6, atol=1e-7)

    simulator = import_nir(path, dt)
    logits, spikes = simulator(digits_x, 3)
    ref_logits, ref_spikes = eager(model, digits_x)
    assert torch.allclose(logits, ref_logits, rtol=0, atol=1e-4)
    assert torch.equal(logits.mean(0).argmax(-1), ref_logits.mean(0).argmax(-1))
    for name, ref in ref_spikes.items():
        assert torch.equal(spikes[name.replace(".", "_")], ref), name
        assert 0.01 < ref.mean() < 0.9, name


def test_residual_student_sums_edges(tmp_path, digits_x):
    model = make_student(arch="resnet", width=4, timesteps=2, seed=2)[0]
    path = tmp_path / "resnet.nir"
    result = export_nir(model, path, input_shape=SHAPE, timesteps=2, random_inputs=True)
    graph = nir.read(path)
    into_act2 = sorted(src for src, dst in graph.edges if dst == "layers_1_act2")
    assert into_act2 == ["layers_1_conv2", "layers_1_shortcut_0"]  # NIR sums both edges
    assert isinstance(graph.nodes["pool"], nir.AvgPool2d)  # adaptive pool -> fixed window
    assert "BatchNorm" not in "".join(result.nodes.values())
    logits, _ = import_nir(path, result.dt)(digits_x, 2)
    ref_logits, ref_spikes = eager(model, digits_x)
    assert torch.allclose(logits, ref_logits, rtol=0, atol=1e-4)
    assert torch.equal(logits.mean(0).argmax(-1), ref_logits.mean(0).argmax(-1))
    assert all(s.mean() > 0.005 for s in ref_spikes.values())


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


def test_maxpool_and_custom_layers_are_refused(tmp_path):
    source = _user_source(
        layer.Conv2d(1, 4, 3, padding=1, step_mode="m"), neuron.LIFNode(step_mode="m"),
        layer.MaxPool2d(2, step_mode="m"), layer.Flatten(step_mode="m"),
        layer.Linear(4 * 4 * 4, 3, step_mode="m"))
    with pytest.raises(NeuroKDError, match=r"2 \(max pooling"):
        export_nir(source, tmp_path / "m.nir", random_inputs=True)
    assert list(tmp_path.iterdir()) == []


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
    onnx_result = export_onnx(source, tmp_path / "tie.onnx", dynamo=False, random_inputs=True)  # >= in ONNX too
    assert onnx_result.agreement.firing_rate > 0


def test_spikingjelly_importer_reads_the_file(tmp_path, digits_x):
    """Cross-check with spikingjelly's own NIR importer (nirtorch, in the dev extra)."""
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    model, _ = make_student()
    result = export_nir(model, tmp_path / "s.nir", input_shape=SHAPE, timesteps=3,
                        random_inputs=True)
    module = import_from_nir(nir.read(result.path), dt=result.dt, step_mode="s")
    state, outputs = None, []
    for _ in range(3):
        out, state = module(digits_x, state)
        outputs.append(out)
    ref_logits, _ = eager(model, digits_x)
    assert torch.allclose(torch.stack(outputs), ref_logits, rtol=0, atol=1e-4)
