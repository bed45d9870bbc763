"""Residual networks without a data set on Loihi: Lava against the integer model, group by group.

spikingjelly's spiking ResNet-18 and SEW-ResNet-18 (``cnf="ADD"``), built as
``benchmarks/zoo.py`` builds them (LIF, 10 classes, 3x32x32, T = 2), and neurokd's CIFAR-shaped
``resnet19`` student (3x32x32, T = 4), all with random weights and random BatchNorm
statistics (running mean N(0, 0.3^2), variance U(0.5, 1.5), scale U(0.5, 2.5), seeded: with
the initial statistics the deep layers stay silent and the comparison would be of zeros).
Each is exported with ``neurokd.exporters.export_loihi`` (neurokd's Loihi graph file, input
range calibrated on seeded N(0, 1) inputs), then the same seeded inputs run through Lava (the
graph of ``lava.proc`` processes, ``fixed_pt``), the bit-accurate integer model and the float
network stored in the file. Reported per network: identical spikes per group (Lava vs integer
model), argmax agreement (Lava vs integer, integer vs float), spikes per group, Lava's
simulation time per sample, the export's size report.

Writes lava_agreement-graphs.md and .json into benchmarks/runs/results/ (--publish:
benchmarks/results/).

Usage: python benchmarks/lava_graph_agreement.py [--samples N] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import results_dir
import torch
from publish import machine, publish
from spikingjelly.activation_based import functional, neuron
from spikingjelly.activation_based.model import sew_resnet, spiking_resnet
from torch import nn

from neurokd.data.encoding import DirectEncoding
from neurokd.exporters import export_loihi
from neurokd.exporters.loihi.graph_file import read_graph
from neurokd.exporters.loihi.graph_network import run_graph_fixed_point, run_graph_float
from neurokd.exporters.loihi.lava_host import lava_python, run_lava
from neurokd.files.safe_io import make_folder
from neurokd.models import build_student
from neurokd.runtime.progress import PlainReporter
from neurokd.student.sources import StudentSource
from neurokd.text import pct

RUNS = Path(__file__).resolve().parent / "runs" / "lava-graphs"
CIFAR = (3, 32, 32)


def _zoo(build, timesteps: int = 2):
    def make() -> tuple[nn.Module, int]:
        model = build()
        functional.set_step_mode(model, "m")
        return DirectEncoding(model.eval(), CIFAR, timesteps), timesteps
    return make


def _resnet19() -> tuple[nn.Module, int]:
    config = {"student": "resnet19", "input_shape": list(CIFAR), "num_classes": 10,
              "timesteps": 4, "width": 16, "neuron_tau": 2.0, "v_threshold": 1.0,
              "reset": "hard"}
    return build_student(config), 4


NETWORKS = {
    "spiking ResNet-18": _zoo(lambda: spiking_resnet.spiking_resnet18(
        spiking_neuron=neuron.LIFNode, num_classes=10)),
    "SEW-ResNet-18 (ADD)": _zoo(lambda: sew_resnet.sew_resnet18(
        spiking_neuron=neuron.LIFNode, num_classes=10, cnf="ADD")),
    "resnet19 (CIFAR-shaped)": _resnet19,
}


def randomise_batchnorm(model: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
            c = bn.num_features
            bn.running_mean.copy_(torch.randn(c, generator=gen) * 0.3)
            bn.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            bn.weight.copy_(torch.rand(c, generator=gen) * 2 + 0.5)


def run_network(name: str, samples: int) -> dict:
    torch.manual_seed(0)
    model, timesteps = NETWORKS[name]()
    randomise_batchnorm(model, 0)
    source = StudentSource(model.eval(), CIFAR, timesteps, name)
    slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    path = make_folder(RUNS) / f"{slug}.net"
    started = time.perf_counter()
    exported = export_loihi(source, path, random_inputs=True, max_samples=16, lava_samples=0,
                            min_agreement=0.0)
    export_seconds = time.perf_counter() - started
    stored = read_graph(path)
    network = stored.network
    x = torch.randn(samples, *CIFAR, generator=torch.Generator().manual_seed(1))
    x_q = network.quantize_input(x)
    started = time.perf_counter()
    lava = run_lava(lava_python(), path, x_q, network.timesteps, PlainReporter(), chunk=samples)
    lava_wall = time.perf_counter() - started
    fixed = run_graph_fixed_point(network, x_q)
    float_logits, float_spikes = run_graph_float(stored.float_graph, x)
    lava_readout = (lava[f"spikes_{len(network.groups) - 1}"] if network.readout.spiking
                    else lava["readout"])
    lava_pred = network.logits(lava_readout).mean(1).argmax(-1)
    fixed_pred = network.logits(fixed.readout).mean(1).argmax(-1)
    groups = {}
    for k, expected in fixed.spikes.items():
        group = network.groups[k]
        got = lava[f"spikes_{k}"]
        groups[group.name] = {
            "role": group.role, "identical": float((got == expected).mean()),
            "lava_spikes": int(got.sum()), "rate": float(got.mean()),
            "integer_vs_float": float((expected.swapaxes(0, 1) == float_spikes[k]).mean())}
    return {"network": name, "timesteps": network.timesteps, "samples": samples,
            "groups": groups, "lava_vs_integer_argmax": float((lava_pred == fixed_pred).mean()),
            "readout_identical": bool(network.readout.spiking
                                      or np.array_equal(lava["readout"], fixed.readout)),
            "integer_vs_float_argmax": float(
                (fixed_pred == float_logits.mean(0).argmax(-1)).mean()),
            "lava_seconds_per_sample": float(lava["seconds"]) / samples,
            "lava_wall_seconds": lava_wall, "export_seconds": export_seconds,
            "size": exported.size.to_json(), "size_line": exported.size.lines()[0].strip(),
            "graph": exported.graph, "saturated": fixed.saturated}


def render(f: dict) -> str:
    lines = ["# Residual networks on Loihi: Lava vs the integer model", "",
             "Random weights, random BatchNorm statistics (seeded), seeded N(0, 1) inputs: "
             "these figures are about the deployment being bit-exact, not accuracy. Each "
             "network is exported to neurokd's Loihi graph file and run in Lava 0.10's CPU "
             "simulator (`Loihi2SimCfg(select_tag=\"fixed_pt\")`) as a graph of `lava.proc` "
             "processes, and in neurokd's bit-accurate integer model.", "",
             "| network | T | samples | identical spikes (all groups) | argmax Lava vs integer "
             "| readout identical | argmax integer vs float | Lava s / sample |",
             "|---|---:|---:|---:|---:|---|---:|---:|"]
    for row in f["networks"]:
        total = sum(g["identical"] for g in row["groups"].values()) / len(row["groups"])
        lines.append(f"| {row['network']} | {row['timesteps']} | {row['samples']} | "
                     f"{pct(min(g['identical'] for g in row['groups'].values()))} (mean "
                     f"{pct(total)}) | {pct(row['lava_vs_integer_argmax'])} | "
                     f"{'yes' if row['readout_identical'] else 'NO'} | "
                     f"{pct(row['integer_vs_float_argmax'])} | "
                     f"{row['lava_seconds_per_sample']:.1f} |")
    for row in f["networks"]:
        lines += ["", f"## {row['network']}", "", f"Graph: {row['graph']}. {row['size_line']}",
                  "", "| group | role | identical spikes, Lava vs integer | spikes in Lava | "
                  "firing rate | identical spikes, integer vs float |",
                  "|---|---|---:|---:|---:|---:|"]
        for name, g in row["groups"].items():
            lines.append(f"| {name} | {g['role']} | {pct(g['identical'])} | "
                         f"{g['lava_spikes']:,} | {g['rate']:.4f} | "
                         f"{pct(g['integer_vs_float'])} |")
    lines += ["", "Lava time per sample covers Lava's run calls (start-up, compilation and "
              "building excluded; the whole Lava call per network is in the JSON, "
              "`lava_wall_seconds`). "
              f"Machine: {f['machine']}, {f['load']} before the run (shared with other jobs).",
              "", f"Command: `{f['command']}`", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--only", nargs="*", choices=list(NETWORKS), default=None)
    results_dir.add_options(parser)
    args = parser.parse_args()
    figures = {**machine(), "networks": [],
               "command": "python benchmarks/lava_graph_agreement.py"
               + (f" --samples {args.samples}" if args.samples != 4 else "")}
    for name in args.only or NETWORKS:
        print(f"{name} ...", flush=True)
        figures["networks"].append(run_network(name, args.samples))
    publish(results_dir.folder(args), "lava_agreement-graphs", figures, render)


if __name__ == "__main__":
    main()
