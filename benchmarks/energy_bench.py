"""Cost of `neurokd energy report` and the demo student's SNN/ANN energy under each profile
and energy model, with per-layer break-even spike rates.

1. Time: the library call behind `neurokd energy report` (``neurokd.energy.estimate``: the
   hooked forward pass over every batch, SOPs from the summed event maps, the teacher's MACs,
   pricing) under the ``compute`` model, under ``memory`` (Lemaire et al.'s memory traffic and
   the break-even rates) and under ``memory`` with ``--neurobench``, versus a plain evaluation
   pass of the same student (``reset_net`` + forward + argmax per batch) over the same digits
   test-split batches, and, for reference, the same forward pass under spikingjelly's
   ``DispatchCounterMode`` with ``SynOpCounter`` + ``MACCounter`` (what counting per aten op
   costs). The passes alternate within each repeat so that load from other processes hits them
   alike; medians are reported.
2. Energy: the report of the demo student (teacher as ANN reference, and the ReLU twin) under
   every built-in profile and every energy model: SNN/ANN ratio, the share of memory (and of
   addressing) in the SNN's energy, and per layer the measured input spike rate beside the
   break-even rate.

Writes (into benchmarks/runs/results/; --publish: benchmarks/results/) energy.md and energy.json.

Usage: python benchmarks/energy_bench.py [CHECKPOINT] [--repeats R] [--batch-size B] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import results_dir
import torch
from spikingjelly.activation_based import functional
from spikingjelly.activation_based.op_counter import (
    DispatchCounterMode,
    MACCounter,
    SynOpCounter,
)

from neurokd.energy import ENERGY_MODELS, PROFILES, estimate
from neurokd.exporters.verify import private_copy
from neurokd.files.safe_io import write_json, write_text
from neurokd.student.inputs import source_batches
from neurokd.student.sources import load_source


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def eval_pass(model, batches) -> int:
    correct = 0
    with torch.no_grad():
        for x, y in batches:
            functional.reset_net(model)
            correct += int((model(x).mean(0).argmax(-1) == y).sum())
    return correct


def op_counter_pass(model, batches) -> tuple[int, int]:
    synop, mac = SynOpCounter(), MACCounter()
    with torch.no_grad():
        for x, _ in batches:
            functional.reset_net(model)
            with DispatchCounterMode([synop, mac]):
                model(x)
    return synop.get_total(), mac.get_total()


PASSES = {  # name -> the estimate call it times (None: the plain pass, op_counter: its own)
    "energy_report": {"energy_model": "compute"},
    "energy_report_memory": {"energy_model": "memory"},
    "energy_report_memory_neurobench": {"energy_model": "memory", "neurobench": True},
}


def measure_time(source, batches, repeats: int) -> dict:
    model = private_copy(source.model)
    inputs = [x for x, _ in batches]
    for _ in range(2):  # warm-up: allocator, oneDNN primitives
        eval_pass(model, batches)
        for options in PASSES.values():
            estimate(source, inputs, **options)
    times = {"eval": [], **{name: [] for name in PASSES}, "op_counter": []}
    for _ in range(repeats):
        times["eval"].append(timed(lambda: eval_pass(model, batches)))
        for name, options in PASSES.items():
            times[name].append(timed(lambda options=options: estimate(source, inputs, **options)))
        times["op_counter"].append(timed(lambda: op_counter_pass(model, batches)))
    medians = {key: statistics.median(values) for key, values in times.items()}
    over_eval = {name: medians[name] / medians["eval"] for name in (*PASSES, "op_counter")}
    paired = {name: statistics.median(r / e for r, e in zip(times[name], times["eval"],
                                                             strict=True)) for name in PASSES}
    return {"median_s": medians, "over_eval": over_eval, "median_of_paired_ratios": paired,
            "energy_over_eval": over_eval["energy_report"],
            "op_counter_over_eval": over_eval["op_counter"],
            "repeats": repeats, "samples": sum(len(x) for x in inputs)}


def profile_table(source, inputs) -> list[dict]:
    rows = []
    for name in PROFILES:
        for model in ENERGY_MODELS:
            for ann in ("teacher", "twin"):
                result = estimate(source, inputs, name, ann=ann, energy_model=model)
                rows.append(_row(result, name, model))
    return rows


def _row(result, profile: str, model: str) -> dict:
    totals = result.totals()
    snn = result.snn_energy_pj
    layers = [{"name": layer.name, "input_rate": layer.input_event_rate,
               "break_even_rate": result.break_even(layer),
               "energy_pj": layer.energy_pj,
               "ann_energy_pj": next((a.energy_pj for a in result.ann_layers
                                      if a.name == layer.name), None)}
              for layer in result.layers]
    return {"profile": profile, "energy_model": model, "ann": result.ann,
            "ann_profile": result.ann_profile or profile, "snn_energy_pj": snn,
            "ann_energy_pj": result.ann_energy_pj, "ratio": result.ratio,
            "memory_share": totals.get("memory_energy_pj", 0.0) / snn,
            "addressing_share": totals.get("addressing_energy_pj", 0.0) / snn,
            "synops": totals.get("synops", totals.get("fanout_synops")),
            "macs": totals["macs"], "ann_macs": result.ann_totals()["macs"], "layers": layers}


def ensure_demo(checkpoint: Path) -> None:
    if not checkpoint.is_file():
        print(f"{checkpoint} missing: training the demo student", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "neurokd", "distill", "--name", "demo", "--quiet"],
                       check=True)


def _timing_lines(timing) -> list[str]:
    t, over, paired = timing["median_s"], timing["over_eval"], timing["median_of_paired_ratios"]
    labels = {"energy_report": "`estimate`, compute model (hooks, SOPs, teacher MACs, pricing)",
              "energy_report_memory": "`estimate`, memory model (+ memory traffic, break-even)",
              "energy_report_memory_neurobench": "`estimate`, memory model + `--neurobench`"}
    lines = [
        "## Time of the energy report vs a plain evaluation pass (same run, same batches)", "",
        f"Median over {timing['repeats']} repeats; the passes alternate within each repeat.",
        "", "| pass | median time (ms) | / eval | median of per-repeat ratios |",
        "|---|---:|---:|---:|",
        f"| plain evaluation (reset_net + forward + argmax) | {1000 * t['eval']:.1f} | 1.00x | |"]
    lines += [f"| {labels[name]} | {1000 * t[name]:.1f} | {over[name]:.2f}x | "
              f"{paired[name]:.2f}x |" for name in PASSES]
    lines += [f"| spikingjelly `DispatchCounterMode` (SynOp + MAC counters) | "
              f"{1000 * t['op_counter']:.1f} | {over['op_counter']:.2f}x | |", "",
              "Goals: compute <= 1.3x, memory <= 1.5x the evaluation pass.", ""]
    return lines


def energy_lines(rows) -> list[str]:
    lines = ["## SNN / ANN energy per inference under each profile and energy model", "",
             "Memory share: the SNN's memory traffic (inputs/outputs, weights, potentials) in its "
             "energy; addressing: its address arithmetic.", "",
             "| profile | model | ANN reference (priced by) | SNN | ANN | SNN / ANN | memory "
             "share | addressing share | SOPs | SNN MACs | ANN MACs |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(
            f"| {row['profile']} | {row['energy_model']} | {row['ann']} ({row['ann_profile']}) | "
            f"{row['snn_energy_pj'] / 1e3:.1f} nJ | {row['ann_energy_pj'] / 1e3:.1f} nJ | "
            f"{row['ratio']:.3f} | {row['memory_share']:.1%} | {row['addressing_share']:.1%} | "
            f"{row['synops']:,.0f} | {row['macs']:,.0f} | {row['ann_macs']:,.0f} |")
    lines += ["", "## Per layer: measured input spike rate vs break-even rate (ReLU twin as the "
              "ANN)", "", "Below the break-even rate the spiking layer costs less than the ANN "
              "layer; `never`: it costs more even with no input spike; the encoding layer's "
              "input is analog (no rate).", ""]
    twin = [row for row in rows if row["ann"] == "ReLU twin of the student"]
    names = [layer["name"] for layer in twin[0]["layers"]]
    lines += ["| profile | model | " + " | ".join(f"{n}: rate / break-even" for n in names) + " |",
              "|---|---|" + "---:|" * len(names)]
    for row in twin:
        cells = [_rate_cell(layer) for layer in row["layers"]]
        lines.append(f"| {row['profile']} | {row['energy_model']} | " + " | ".join(cells) + " |")
    return lines + [""]


def _rate_cell(layer) -> str:
    rate, even = layer["input_rate"], layer["break_even_rate"]
    if even is None:
        return f"{rate:.3f} (analog)"
    mark = "below" if rate < even else "above"
    shown = "never" if even <= 0 else f"{even:.3f}"
    return f"{rate:.3f} / {shown} ({mark})"


def write_results(checkpoint, source, timing, rows, command, load_at_start) -> None:
    load = os.getloadavg()
    lines = [
        "# Energy report: cost and the demo student's SNN/ANN energy", "",
        f"Student `{checkpoint}` (T = {source.timesteps}, input {tuple(source.input_shape)}), "
        f"digits test split ({timing['samples']} samples), batch size {args.batch_size}.", "",
        *_timing_lines(timing), *energy_lines(rows),
        f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs (shared with other "
        f"jobs; 1-minute load average {load_at_start[0]:.2f} at the start, {load[0]:.2f} at "
        "the end), "
        f"{torch.get_num_threads()} torch threads; Python {platform.python_version()}, torch "
        f"{torch.__version__}.", "", f"Command: `{command}`", ""]
    out = results_dir.folder(args)
    write_text(out / "energy.md", "\n".join(lines))
    write_json(out / "energy.json", {"checkpoint": str(checkpoint), "timing": timing,
                                         "profiles": rows,
                                         "load_average": {"start": load_at_start, "end": load},
                                         "command": command})


def main() -> None:
    load_at_start = os.getloadavg()
    checkpoint = Path(args.checkpoint)
    if checkpoint == Path("runs/demo/student.pt"):
        ensure_demo(checkpoint)
    source = load_source(checkpoint)
    loader, _, _ = source_batches(source, batch_size=args.batch_size)
    batches = [(x.float(), y) for x, y in loader]
    timing = measure_time(source, batches, args.repeats)
    rows = profile_table(source, [x for x, _ in batches])
    command = "python benchmarks/energy_bench.py " + " ".join(sys.argv[1:])
    write_results(checkpoint, source, timing, rows, command.strip(), load_at_start)
    print((results_dir.folder(args) / "energy.md").read_text())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", default="runs/demo/student.pt")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: steadier timings on a shared machine)")
    results_dir.add_options(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    main()
