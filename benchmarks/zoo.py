"""spikingjelly's model zoo through neurokd: model x target -> exported (checked) or refused.

Spiking VGG-11-bn, spiking ResNet-18, SEW-ResNet-18 (ADD) with LIF neurons and the
parametric-LIF MNISTNet, built by ``spikingjelly.activation_based.model`` as its examples build
them (multi-step, T = 2, 10 classes; CIFAR-sized 3x32x32 input, MNISTNet 1x28x28 with 8
channels), exported to every target on seeded random inputs (ONNX: checked in onnxruntime;
NIR: re-simulated; Loihi: integer model, Lava skipped as nothing reaches it) and priced by
``energy.estimate`` (loihi profile, ReLU twin). A refusal is the exporter's own one-line error.

Writes (into benchmarks/runs/results/; --publish: benchmarks/results/) zoo.md and .json.  Usage: python benchmarks/zoo.py
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import results_dir
import torch
from publish import machine, publish
from spikingjelly.activation_based import functional, neuron
from spikingjelly.activation_based.model import (
    parametric_lif_net,
    sew_resnet,
    spiking_resnet,
    spiking_vgg,
)

from neurokd import energy
from neurokd.data.encoding import DirectEncoding
from neurokd.errors import NeuroKDError
from neurokd.exporters import EXPORTERS
from neurokd.files.safe_io import make_folder
from neurokd.student.sources import StudentSource

RUNS = Path(__file__).resolve().parent / "runs" / "zoo"
T = 2
MODELS = {
    "spiking VGG-11-bn": (lambda: spiking_vgg.spiking_vgg11_bn(
        spiking_neuron=neuron.LIFNode, num_classes=10), (3, 32, 32)),
    "spiking ResNet-18": (lambda: spiking_resnet.spiking_resnet18(
        spiking_neuron=neuron.LIFNode, num_classes=10), (3, 32, 32)),
    "SEW-ResNet-18 (ADD)": (lambda: sew_resnet.sew_resnet18(
        spiking_neuron=neuron.LIFNode, num_classes=10, cnf="ADD"), (3, 32, 32)),
    "MNISTNet (PLIF)": (lambda: parametric_lif_net.MNISTNet(
        channels=8, spiking_neuron=neuron.ParametricLIFNode), (1, 28, 28)),
}
OPTIONS = {"onnx": {}, "nir": {}, "loihi": {"lava_samples": 0}}


def run_model(name: str) -> dict:
    build, shape = MODELS[name]
    torch.manual_seed(0)
    model = build()
    functional.set_step_mode(model, "m")
    source = StudentSource(DirectEncoding(model.eval(), shape, T).eval(), shape, T, name)
    row = {"model": name, "input_shape": list(shape),
           "parameters": sum(p.numel() for p in model.parameters()), "targets": {}}
    for target, options in OPTIONS.items():
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        path = make_folder(RUNS) / f"{slug}{EXPORTERS[target].suffix}"
        started = time.perf_counter()
        try:
            result = EXPORTERS[target].export(source, path, random_inputs=True, max_samples=8,
                                              **options)
            outcome = {"exported": True, "check": result.summary_lines()[-1].strip()}
        except NeuroKDError as exc:
            outcome = {"exported": False, "reason": str(exc)}
        outcome["seconds"] = time.perf_counter() - started
        row["targets"][target] = outcome
    x = torch.randn(8, *shape, generator=torch.Generator().manual_seed(0))
    report = energy.estimate(source, x, profile="loihi", ann="twin")
    row["energy"] = {"snn_pj": report.snn_energy_pj, "ann_pj": report.ann_energy_pj,
                     "ratio": report.ratio}
    return row


def _by_reason(message: str) -> str:
    """``a (why: ...); b (why: ...)`` as ``why: a, b`` (the full line is listed below)."""
    groups: dict[str, list[str]] = {}
    listed = message.split("unsupported layers: ")[-1]
    for name, why in re.findall(r"(?:^|; )(\S+) \(([^:()]+)", listed):
        groups.setdefault(why, []).append(name)
    return "; ".join(f"{why}: {', '.join(names)}" for why, names in groups.items()) or message


def render(figures: dict) -> str:
    lines = ["# spikingjelly's model zoo through neurokd", "",
             f"Models as `spikingjelly.activation_based.model` builds them (multi-step, T = {T}, "
             "random initialisation, seeded N(0,1) inputs: these figures are about what each "
             "target can hold, not accuracy).", "",
             "| model | parameters | input | onnx | nir | loihi | energy SNN / ReLU twin "
             "(loihi profile, 8 inputs) |", "|---|---:|---|---|---|---|---:|"]
    for row in figures["rows"]:
        cells = []
        for target in OPTIONS:
            t = row["targets"][target]
            cells.append(f"exported ({t['seconds']:.0f} s)" if t["exported"] else
                         "refused: " + _by_reason(t["reason"]))
        lines.append(f"| {row['model']} | {row['parameters'] / 1e6:.1f} M | "
                     f"{'x'.join(map(str, row['input_shape']))} | " + " | ".join(cells) +
                     f" | {row['energy']['ratio']:.3f} |")
    lines += ["", "The checks of the exports that were written:", ""]
    for row in figures["rows"]:
        lines += [f"- {row['model']} / {target}: {t['check']}" for target, t in
                  row["targets"].items() if t["exported"]]
    lines += ["", "Refusals in full (the one line `neurokd export` prints):", ""]
    for row in figures["rows"]:
        lines += [f"- {row['model']} / {target}: {t['reason']}" for target, t in
                  row["targets"].items() if not t["exported"]]
    lines += ["", f"Machine: {figures['machine']}; load before the run: {figures['load']}. "
              f"Total {figures['seconds']:.0f} s.", "", "Command: `python benchmarks/zoo.py`", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    results_dir.add_options(parser)
    args = parser.parse_args()
    publish_info = machine()
    started = time.perf_counter()
    figures = {"rows": [run_model(name) for name in MODELS], **publish_info}
    figures["seconds"] = time.perf_counter() - started
    publish(results_dir.folder(args), "zoo", figures, render)


if __name__ == "__main__":
    main()
