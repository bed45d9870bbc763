"""NIR both ways, measured: neurokd's students in every NIR consumer, and an snnTorch-trained
network through neurokd to Loihi.

1. The compatibility matrix. Four built-in students are trained briefly on real data (neurokd
   ``distill``, CE, LIF: the CNN and the ResNet on digits, the 1-D CNN on mnist1d; the CNN
   with IF neurons by a plain CE loop, the run config has no IF option), exported with
   ``export_nir(check_consumers=True)`` and run by snnTorch, Norse, spikingjelly, Sinabs and
   Rockpool on the whole test split (digits: 360 samples; mnist1d: 512), in batches of 1 and
   64: runs?, argmax agreement with the student, max |logit difference|, what failed, and
   what the consumer cannot represent, by node.
2. An snnTorch network (conv-Leaky-conv-Leaky-linear, zero reset) trained in snnTorch on
   digits, exported by snnTorch's ``export_to_nir``, read by neurokd, exported to Loihi (netx)
   and run in Lava on the whole test split: accuracy in snnTorch, in neurokd's reading, in the
   integer model and in Lava, and Lava's agreement with the integer model.

Writes (into benchmarks/runs/results/; --publish: benchmarks/results/) nir_consumers.md and .json.
Usage: python benchmarks/nir_consumers.py [--epochs N]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
import warnings
from pathlib import Path

import nir
import results_dir
import torch
from publish import machine, publish
from torch import nn

from neurokd import RunConfig, distill
from neurokd.data import load_data
from neurokd.exporters import export_loihi, export_nir
from neurokd.exporters.simulation import simulate
from neurokd.files.safe_io import make_folder
from neurokd.student.sources import StudentSource, load_source, nir_source
from neurokd.text import pct

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "benchmarks" / "runs" / "nir"
T = 4


def train_students(epochs: int) -> dict[str, StudentSource]:
    students = {}
    for name, student, dataset in (("cnn-lif", "cnn", "digits"), ("resnet-lif", "resnet", "digits"),
                                   ("mnist1d-cnn-lif", "cnn", "mnist1d")):
        path = RUNS / name / "student.pt"
        if not path.is_file():
            distill(RunConfig(out=str(RUNS), name=name, student=student, dataset=dataset,
                              method="ce", epochs=epochs, timesteps=T, seed=0))
        students[name] = load_source(path)
    students["cnn-if"] = _if_student(epochs)
    return students


def _if_student(epochs: int) -> StudentSource:
    """The built-in CNN with IF neurons, trained with CE on the mean logits over T."""
    from spikingjelly.activation_based import functional, neuron, surrogate

    from neurokd.models.snn import SpikingCNN

    def if_neuron():
        return neuron.IFNode(v_threshold=1.0, v_reset=0.0, surrogate_function=surrogate.ATan(),
                             detach_reset=True, step_mode="m")

    torch.manual_seed(0)
    model = SpikingCNN((1, 8, 8), 10, T, 16, if_neuron)
    data = load_data("digits")
    optimiser = torch.optim.Adam(model.parameters(), 2e-3)
    loader = torch.utils.data.DataLoader(data.train, batch_size=64, shuffle=True)
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            functional.reset_net(model)
            loss = nn.functional.cross_entropy(model(x).mean(0), y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    functional.reset_net(model)
    return StudentSource(model.eval(), (1, 8, 8), T, "cnn-if", {"dataset": "digits"})


def matrix(students: dict[str, StudentSource]) -> list[dict]:
    rows = []
    for name, source in students.items():
        started = time.perf_counter()
        result = export_nir(source, make_folder(RUNS) / f"{name}.nir", max_samples=512,
                            check_consumers=True)
        rows.append({"student": name, "samples": result.agreement.samples,
                     "batch_sizes": list(result.agreement.batch_sizes),
                     "firing_rate": result.agreement.firing_rate,
                     "nodes": sorted(set(result.nodes.values())),
                     "seconds": time.perf_counter() - started,
                     "consumers": [{"consumer": r.consumer, "version": r.version, "runs": r.runs,
                                    "agrees": r.agrees, "argmax": r.argmax_agreement,
                                    "max_logit_difference": r.max_logit_difference,
                                    "logit_scale": r.logit_scale, "failure": r.failure,
                                    "notes": r.notes} for r in result.consumers]})
    return rows


def snntorch_to_loihi(epochs: int) -> dict:
    import snntorch as snn
    import snntorch.utils
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        snn.Leaky(beta=torch.full((8, 8, 8), 0.8), threshold=torch.ones(8, 8, 8),
                  init_hidden=True, reset_mechanism="zero"),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        snn.Leaky(beta=torch.full((16, 4, 4), 0.8), threshold=torch.ones(16, 4, 4),
                  init_hidden=True, reset_mechanism="zero"),
        nn.Flatten(), nn.Linear(256, 10))
    data = load_data("digits")

    def logits(x):
        snntorch.utils.reset(net)
        return torch.stack([net(x) for _ in range(T)])

    optimiser = torch.optim.Adam(net.parameters(), 2e-3)
    loader = torch.utils.data.DataLoader(data.train, batch_size=64, shuffle=True)
    started = time.perf_counter()
    for _ in range(epochs):
        for x, y in loader:
            loss = nn.functional.cross_entropy(logits(x).mean(0), y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    train_seconds = time.perf_counter() - started
    x_test, y_test = data.test.tensors
    with torch.no_grad():
        snn_pred = logits(x_test).mean(0).argmax(-1)
    path = make_folder(RUNS) / "snntorch.nir"
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        nir.write(path, export_to_nir(net, torch.rand(1, 1, 8, 8), ignore_dims=[0]))
    read = nir_source(path, timesteps=T)
    source = StudentSource(read.model, read.input_shape, T, "snntorch", {"dataset": "digits"})
    with torch.no_grad():
        read_pred = source.model(x_test).mean(0).argmax(-1)
    exported = export_loihi(source, RUNS / "snntorch.net", max_samples=10_000)
    lava = simulate(RUNS / "snntorch.net", dataset="digits")
    return {"train_epochs": epochs, "train_seconds": train_seconds, "samples": len(y_test),
            "snntorch_accuracy": float((snn_pred == y_test).float().mean()),
            "neurokd_read_accuracy": float((read_pred == y_test).float().mean()),
            "read_vs_snntorch_argmax": float((read_pred == snn_pred).float().mean()),
            "quantized_accuracy": lava.quantized_accuracy, "lava_accuracy": lava.accuracy,
            "lava_agreement": lava.agreement, "identical_spikes": lava.identical_spikes,
            "quantized_vs_float_argmax": exported.agreement.argmax_agreement,
            "lava_seconds_per_sample": lava.seconds_per_sample}




def render(figures: dict) -> str:
    lines = ["# NIR consumers: neurokd's students in snnTorch, Norse, spikingjelly, Sinabs, "
             "Rockpool", "",
             "Each student's `.nir` (written by `neurokd export --target nir`) run by each library "
             "through its own NIR import, on the test split in batches of 1 and 64, against the "
             "PyTorch student. *agrees* = same argmax on every sample and logits within 1e-4 x "
             "max(1, |logit|). docs/nir.md explains every cell.", "",
             "| student | consumer | version | runs | argmax agreement | max abs logit diff | "
             "verdict |", "|---|---|---|---|---:|---:|---|"]
    for row in figures["matrix"]:
        for c in row["consumers"]:
            diff = "-" if c["max_logit_difference"] is None else f"{c['max_logit_difference']:.1e}"
            verdict = "agrees" if c["agrees"] else (c["failure"] or "differs")
            lines.append(f"| {row['student']} | {c['consumer']} | {c['version'] or '-'} | "
                         f"{'yes' if c['runs'] else 'no'} | {pct(c['argmax'])} | {diff} | "
                         f"{verdict.replace('|', '/')} |")
    lines += ["", "Samples and activity (mean spike rate of the student's neurons):", ""]
    lines += [f"- {r['student']}: {r['samples']} samples, batch sizes {r['batch_sizes']}, firing "
              f"rate {r['firing_rate']:.3f}, nodes {', '.join(r['nodes'])}"
              for r in figures["matrix"]]
    lines += ["", "What each consumer cannot represent or computes differently, named by node "
              "(from the report):", ""]
    for row in figures["matrix"]:
        for c in row["consumers"]:
            lines += [f"- {row['student']} / {c['consumer']}: {note}" for note in c["notes"]]
    s = figures["snntorch_to_loihi"]
    lines += ["", "## An snnTorch-trained network on Loihi through neurokd", "",
              f"conv(8)-Leaky-conv(16, stride 2)-Leaky-linear, beta 0.8, zero reset, T = {T}, "
              f"trained in snnTorch 1.0 on digits for {s['train_epochs']} epochs "
              f"({s['train_seconds']:.0f} s); `export_to_nir` -> `neurokd` reads the file -> "
              "`export_loihi` (8-bit netx) -> Lava (`neurokd simulate`), digits test split "
              f"({s['samples']} samples):", "",
              "| quantity | value |", "|---|---:|",
              f"| accuracy in snnTorch | {pct(s['snntorch_accuracy'])} |",
              f"| accuracy of neurokd's reading of the NIR file (float) | "
              f"{pct(s['neurokd_read_accuracy'])} |",
              f"| argmax agreement, neurokd's reading vs snnTorch | "
              f"{pct(s['read_vs_snntorch_argmax'])} |",
              f"| accuracy of the 8-bit integer model | {pct(s['quantized_accuracy'])} |",
              f"| accuracy in Lava | {pct(s['lava_accuracy'])} |",
              f"| accuracy drop, snnTorch -> Lava | "
              f"{100 * (s['snntorch_accuracy'] - s['lava_accuracy']):.2f} pt |",
              f"| argmax agreement, Lava vs integer model | {pct(s['lava_agreement'])} |",
              f"| argmax agreement, integer model vs float | "
              f"{pct(s['quantized_vs_float_argmax'])} |"]
    lines += [f"| identical spikes, Lava vs integer model, {k} | {pct(v)} |"
              for k, v in s["identical_spikes"].items()]
    lines += ["", f"Machine: {figures['machine']}; load before the run: {figures['load']}. "
              f"Total {figures['seconds']:.0f} s.", "", f"Command: `{figures['command']}`", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    results_dir.add_options(parser)
    args = parser.parse_args()
    started_on = machine()
    started = time.perf_counter()
    figures = {"matrix": matrix(train_students(args.epochs)),
               "snntorch_to_loihi": snntorch_to_loihi(args.epochs), **started_on,
               "command": "python benchmarks/nir_consumers.py"
               + (f" --epochs {args.epochs}" if args.epochs != 8 else "")}
    figures["seconds"] = time.perf_counter() - started
    publish(results_dir.folder(args), "nir_consumers", figures, render)


if __name__ == "__main__":
    main()
