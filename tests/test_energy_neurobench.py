"""``--neurobench``: NeuroBench's metrics from neurokd's counting pass, held equal to the
``neurobench`` package (2.3, a dev dependency) run on the same student and the same inputs,
and what the package cannot run on a spikingjelly student."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch
from neurobench.benchmarks import Benchmark
from neurobench.metrics.static import ConnectionSparsity, Footprint
from neurobench.metrics.workload import (
    ActivationSparsity,
    MembraneUpdates,
    NeuronOperations,
    SynapticOperations,
)
from neurobench.models import NeuroBenchModel
from spikingjelly.activation_based import functional, neuron
from torch.utils.data import DataLoader, TensorDataset

from neurokd.energy import estimate
from neurokd.models.snn import SpikingCNN
from neurokd.student.sources import StudentSource

from helpers import run_cli

T = 4


class SpikingJellyStudent(NeuroBenchModel):
    """NeuroBench's view of a neurokd student: batch-first data (event data [B, T, ...] goes
    in as [T, B, ...]), state reset per batch, spikingjelly neurons hooked as activations.
    (NeuroBench's own TorchModel / SNNTorchModel misread spikingjelly's layouts.)"""

    def __init__(self, net, event_input: bool):
        super().__init__()
        self.net, self.event_input = net.eval(), event_input
        self.add_activation_module(neuron.BaseNode)

    def __call__(self, batch):
        functional.reset_net(self.net)
        with torch.no_grad():
            out = self.net(batch.transpose(0, 1) if self.event_input else batch)  # [T, B, K]
        return out.transpose(0, 1)

    def __net__(self):
        return self.net


def student() -> SpikingCNN:
    torch.manual_seed(0)
    net = SpikingCNN((1, 8, 8), 10, timesteps=T, width=4)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.fill_(3.0)  # so that every layer spikes
        conv = net.features[3].weight
        conv[:, :2] = 0                    # pruned connections: ConnectionSparsity > 0
        net.classifier[1].weight[:, ::3] = 0
    return net.eval()


def run_neurobench(net, data: torch.Tensor, event_input: bool, metrics):
    labels = torch.zeros(len(data), dtype=torch.long)
    loader = DataLoader(TensorDataset(data, labels), batch_size=7)  # 3 batches, the last short
    bench = Benchmark(SpikingJellyStudent(net, event_input), loader, [], [], metrics)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        results = bench.run(quiet=False)
    return results, [line for line in printed.getvalue().splitlines() if "Error" in line]


def assert_same(ours: dict, theirs: dict) -> None:
    assert ours["Footprint"] == theirs["Footprint"]
    assert round(ours["ConnectionSparsity"], 4) == theirs["ConnectionSparsity"] > 0
    assert ours["ActivationSparsity"] == pytest.approx(theirs["ActivationSparsity"], rel=1e-12)
    assert 0 < ours["ActivationSparsity"] < 1
    for key in ("Effective_MACs", "Effective_ACs", "Dense"):
        assert ours["SynapticOperations"][key] == pytest.approx(
            theirs["SynapticOperations"][key], rel=1e-12), key


@pytest.mark.parametrize("event_input", [False, True], ids=["analog-direct", "event-frames"])
def test_metrics_equal_the_neurobench_package(event_input):
    net = student()
    generator = torch.Generator().manual_seed(3)
    if event_input:  # [B, T, 1, 8, 8] for NeuroBench, [T, B, ...] for neurokd
        data = (torch.rand(17, T, 1, 8, 8, generator=generator) < 0.4).float()
        inputs = data.transpose(0, 1).contiguous()
    else:
        data = inputs = torch.rand(17, 1, 8, 8, generator=generator)
    theirs, errors = run_neurobench(net, data, event_input, [
        [Footprint, ConnectionSparsity], [ActivationSparsity, SynapticOperations]])
    assert errors == []
    ours = estimate(StudentSource(net, (1, 8, 8), T, "student"), [inputs], ann="none",
                    neurobench=True).neurobench
    assert_same(ours, theirs)
    ops = ours["SynapticOperations"]
    if event_input:
        assert ops["Effective_MACs"] == 0 and ops["Effective_ACs"] > 0
    else:  # the encoding layer multiplies analog input, the others accumulate spikes
        assert ops["Effective_MACs"] > 0 and ops["Effective_ACs"] > 0


def test_what_neurobench_cannot_run_on_a_spikingjelly_student():
    """Why --neurobench leaves out MembraneUpdates and NeuronOperations: on spikingjelly
    neurons the package returns 0 membrane updates (it reads snntorch's ``mem``) and its
    NeuronOperations fails; Benchmark.run swallows both (a printed line, a 0 in the results)."""
    net = student()
    data = torch.rand(7, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    results, errors = run_neurobench(net, data, False, [[], [MembraneUpdates, NeuronOperations]])
    assert results["MembraneUpdates"] == 0
    assert results["NeuronOperations"] == 0
    assert any("'LIFNode' object has no attribute '_reset_mechanism'" in e for e in errors)
    counted = estimate(StudentSource(net, (1, 8, 8), T, "student"), [data], ann="none")
    assert counted.totals()["neuron_updates"] > 0  # there were updates to count


def test_cli_writes_neurobench_metrics_under_their_names(trained_run, tmp_path, capsys):
    out = tmp_path / "e.json"
    outcome = run_cli(capsys, "energy", "report", str(trained_run / "student.pt"), "--samples",
                      "20", "--neurobench", "--json", str(out), "--quiet")
    assert outcome.code == 0, outcome.err
    assert "NeuroBench: Footprint" in outcome.out
    import json

    metrics = json.loads(out.read_text())["neurobench"]
    assert set(metrics) == {"Footprint", "ConnectionSparsity", "ActivationSparsity",
                            "SynapticOperations"}
    assert set(metrics["SynapticOperations"]) == {"Effective_MACs", "Effective_ACs", "Dense"}
    assert metrics["Footprint"] > 0 and metrics["SynapticOperations"]["Dense"] > 0
