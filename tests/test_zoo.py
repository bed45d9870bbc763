"""spikingjelly's own model zoo, as spikingjelly builds it, through neurokd's exporters.

Spiking VGG-11-bn, spiking ResNet-18, SEW-ResNet-18 and the parametric-LIF MNISTNet
(``spikingjelly.activation_based.model``) on small inputs: ONNX (checked in onnxruntime) and
the energy report take them whole; NIR and Loihi refuse what they cannot express, naming the
layer and the reason. Plus the forms these models use, one by one.
"""

from __future__ import annotations

import textwrap

import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

from neurokd.data.encoding import DirectEncoding
from neurokd.errors import NeuroKDError
from neurokd.exporters import export_nir, export_onnx
from neurokd.exporters.graph import GraphExecutor, trace_student
from neurokd.student.sources import StudentSource

from helpers import assert_one_line_error, run_cli

ZOO = textwrap.dedent("""
    from spikingjelly.activation_based import neuron
    from spikingjelly.activation_based.model import (parametric_lif_net, sew_resnet,
                                                     spiking_resnet, spiking_vgg)

    def vgg11_bn():
        return spiking_vgg.spiking_vgg11_bn(spiking_neuron=neuron.LIFNode, num_classes=10)

    def resnet18():
        return spiking_resnet.spiking_resnet18(spiking_neuron=neuron.LIFNode, num_classes=10)

    def sew_resnet18():
        return sew_resnet.sew_resnet18(spiking_neuron=neuron.LIFNode, num_classes=10,
                                       cnf="ADD")

    def mnistnet():
        return parametric_lif_net.MNISTNet(channels=8, spiking_neuron=neuron.ParametricLIFNode)
""")
SHAPES = {"vgg11_bn": "3,32,32", "resnet18": "3,32,32", "sew_resnet18": "3,32,32",
          "mnistnet": "1,28,28"}
# model -> target -> what the one error line must say
# (Loihi takes the residual adds and max pools as its graph file: tests/test_loihi_graph.py.)
REFUSALS = {
    "vgg11_bn": {"nir": "features.3 (max pooling: NIR has no max-pool node)",
                 "loihi": "avgpool (AdaptiveAvgPool2d: only average pools with even"},
    "resnet18": {"nir": "maxpool (max pooling: NIR has no max-pool node)"},
    "sew_resnet18": {"nir": "maxpool (max pooling: NIR has no max-pool node)"},
    "mnistnet": {"nir": "conv_fc.3 (max pooling: NIR has no max-pool node)"},
}


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    (tmp_path / "zoo_models.py").write_text(ZOO)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _model_args(name: str) -> list[str]:
    return ["--model", f"zoo_models:{name}", "--input-shape", SHAPES[name], "--timesteps", "2",
            "--random-inputs"]


def _refusal_cases():
    """The MNISTNet rows are quick; the 11-129 M parameter models take seconds each."""
    return [pytest.param(n, t, marks=() if n == "mnistnet" else pytest.mark.slow)
            for n in REFUSALS for t in REFUSALS[n]]


@pytest.mark.parametrize("name, target", _refusal_cases())
def test_zoo_refusals_name_the_layer(zoo, capsys, name, target):
    out = zoo / f"x.{target}"
    outcome = run_cli(capsys, "export", "--target", target, *_model_args(name),
                      "--random-weights", "-o", str(out), "--check-samples", "2", "--quiet")
    assert_one_line_error(outcome, contains=REFUSALS[name][target])
    assert not out.exists() and not list(zoo.glob("*.tmp"))


def test_zoo_max_pools_reach_loihi_as_a_graph(zoo, capsys):
    """MNISTNet's max pools of spikes are OR groups in neurokd's Loihi graph file."""
    out = zoo / "mnistnet.net"
    outcome = run_cli(capsys, "export", "--target", "loihi", *_model_args("mnistnet"),
                      "--random-weights", "-o", str(out), "--check-samples", "4",
                      "--lava-samples", "0", "--quiet")
    assert outcome.code == 0, outcome.err
    assert "neurokd Loihi graph (5 layers, 0 relay and 2 max-pool groups" in outcome.out


@pytest.mark.slow  # 11-129 M parameters through torch.onnx and onnxruntime: minutes
@pytest.mark.parametrize("name", list(SHAPES))
def test_zoo_exports_to_onnx_and_is_priced(zoo, capsys, name):
    out = zoo / f"{name}.onnx"
    outcome = run_cli(capsys, "export", "--target", "onnx", *_model_args(name),
                      "--random-weights", "-o", str(out), "--check-samples", "4", "--quiet")
    assert outcome.code == 0, outcome.err
    assert "spikes identical" in outcome.out and "argmax 100.00%" in outcome.out, outcome.out
    outcome = run_cli(capsys, "energy", "report", *_model_args(name), "--random-weights",
                      "--samples", "4", "--ann", "twin", "--quiet")
    assert outcome.code == 0, outcome.err
    assert "ReLU twin" in outcome.out, outcome.out


def _multistep(*layers: nn.Module) -> nn.Sequential:
    net = nn.Sequential(*layers)
    functional.set_step_mode(net, "m")
    return net.eval()


class _FunctionalFlatten(nn.Module):
    """``torch.flatten(x, 2)`` / ``x.flatten(2)`` in a forward, as the zoo's models write it."""

    def __init__(self, method: bool, start: int = 2):
        super().__init__()
        self.conv = layer.Conv2d(1, 3, 3, padding=1, step_mode="m")
        self.lif = neuron.LIFNode(step_mode="m")
        self.drop = layer.Dropout(0.5, step_mode="m")
        self.fc = layer.Linear(3 * 8 * 8, 4, step_mode="m")
        self.method, self.start = method, start

    def forward(self, x):
        x = self.drop(self.lif(self.conv(x)))
        x = x.flatten(self.start) if self.method else torch.flatten(x, self.start)
        return self.fc(x)


@pytest.mark.parametrize("method", [False, True])
def test_functional_flatten_and_spikingjelly_dropout(method):
    model = DirectEncoding(_FunctionalFlatten(method).eval(), (1, 8, 8), 2)
    graph = trace_student(model, (1, 8, 8), 2)
    kinds = [r.kind for r in graph.records]
    assert kinds == ["input", "conv", "neuron", "flatten", "dense", "output"]  # Dropout: gone
    assert graph.records[3].output_shape == (192,)
    x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    functional.reset_net(model)
    with torch.no_grad():
        assert torch.equal(GraphExecutor(graph)(x)[0], model(x))


def test_flatten_over_the_batch_axes_is_refused_with_the_reason():
    model = DirectEncoding(_FunctionalFlatten(False, start=1).eval(), (1, 8, 8), 2)
    graph = trace_student(model, (1, 8, 8), 2)
    assert graph.offending(("conv", "neuron", "dense")) == [
        "flatten (flatten(start_dim=1) merges the time/batch axes)"]


def test_voting_layer_is_the_average_over_groups():
    net = _multistep(layer.Flatten(), layer.Linear(64, 30), neuron.LIFNode(),
                     layer.VotingLayer(3))
    model = DirectEncoding(net, (1, 8, 8), 3)
    graph = trace_student(model, (1, 8, 8), 3)
    voting = graph.records[-2]
    assert voting.kind == "dense" and tuple(voting.module.weight.shape) == (10, 30)
    x = torch.randn(7, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 3
    functional.reset_net(model)
    with torch.no_grad():
        expected = model(x)
        got = GraphExecutor(graph)(x)[0]
    assert expected.abs().sum() > 0
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_in_place_residual_addition_is_an_addition():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = layer.Conv2d(2, 2, 3, padding=1, step_mode="m")
            self.lif = neuron.LIFNode(step_mode="m")

        def forward(self, x):
            out = self.conv(x)
            out += x  # spiking_resnet's BasicBlock
            return self.lif(out)

    graph = trace_student(DirectEncoding(Block().eval(), (2, 4, 4), 2), (2, 4, 4), 2)
    assert [r.kind for r in graph.records] == ["input", "conv", "add", "neuron", "output"]


def test_an_export_too_big_for_the_machine_is_refused_up_front(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROKD_MAX_MEMORY", "1M")  # as `neurokd --max-memory 1M`
    net = _multistep(layer.Flatten(), layer.Linear(64, 512), neuron.LIFNode(),
                     layer.Linear(512, 10))
    source = StudentSource(DirectEncoding(net, (1, 8, 8), 4), (1, 8, 8), 4, "big")
    weights = 3 * 4 * (64 * 512 + 512 + 512 * 10 + 10)  # three fp32 copies of every weight
    with pytest.raises(NeuroKDError, match=rf"\({weights / 2**20:.1f} MiB for 3 copies of the "
                                           r"weights.*more than the 1.0 MiB neurokd may use "
                                           r"here \(--max-memory\); nothing written"):
        export_onnx(source, tmp_path / "big.onnx", random_inputs=True)
    with pytest.raises(NeuroKDError, match="would need about"):
        export_nir(source, tmp_path / "big.nir", random_inputs=True)
    assert list(tmp_path.iterdir()) == []
