"""Cost of `neurokd energy report` and the demo student's SNN/ANN energy under each profile.

1. Time: the library call behind `neurokd energy report` (``neurokd.energy.estimate``: the
   hooked forward pass over every batch, SOPs from the summed event maps, the teacher's MACs,
   pricing) versus a plain evaluation pass of the same student
   (``reset_net`` + forward + argmax per batch) over the same digits test-split batches, and,
   for reference, the same forward pass under spikingjelly's ``DispatchCounterMode`` with
   ``SynOpCounter`` + ``MACCounter`` (what counting per aten op costs). The three alternate
   within each repeat so that load from other processes hits them alike; medians are reported.
2. Energy: the report of the demo student (teacher as ANN reference, and the ReLU twin) under
   every built-in profile.

Writes benchmarks/results/energy.md and energy.json.

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

import torch
from spikingjelly.activation_based import functional
from spikingjelly.activation_based.op_counter import (
    DispatchCounterMode,
    MACCounter,
    SynOpCounter,
)

from neurokd.energy import PROFILES, estimate
from neurokd.exporters.verify import private_copy
from neurokd.fileio import write_json, write_text
from neurokd.inputs import source_batches
from neurokd.sources import load_source

RESULTS = Path(__file__).parent / "results"


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


def measure_time(source, batches, repeats: int) -> dict:
    model = private_copy(source.model)
    inputs = [x for x, _ in batches]
    for _ in range(2):  # warm-up: allocator, oneDNN primitives
        eval_pass(model, batches), estimate(source, inputs)
    times = {"eval": [], "energy_report": [], "op_counter": []}
    for _ in range(repeats):
        times["eval"].append(timed(lambda: eval_pass(model, batches)))
        times["energy_report"].append(timed(lambda: estimate(source, inputs)))
        times["op_counter"].append(timed(lambda: op_counter_pass(model, batches)))
    medians = {key: statistics.median(values) for key, values in times.items()}
    ratios = [r / e for r, e in zip(times["energy_report"], times["eval"], strict=True)]
    return {"median_s": medians, "energy_over_eval": medians["energy_report"] / medians["eval"],
            "median_of_paired_ratios": statistics.median(ratios),
            "op_counter_over_eval": medians["op_counter"] / medians["eval"],
            "repeats": repeats, "samples": sum(len(x) for x in inputs)}


def profile_table(source, inputs) -> list[dict]:
    rows = []
    for name in PROFILES:
        for ann in ("teacher", "twin"):
            result = estimate(source, inputs, name, ann=ann)
            rows.append({"profile": name, "ann": result.ann, "snn_energy_pj": result.snn_energy_pj,
                         "ann_energy_pj": result.ann_energy_pj, "ratio": result.ratio,
                         "synops": result.totals()["synops"], "macs": result.totals()["macs"],
                         "ann_macs": result.ann_totals()["macs"]})
    return rows


def ensure_demo(checkpoint: Path) -> None:
    if not checkpoint.is_file():
        print(f"{checkpoint} missing: training the demo student", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "neurokd", "distill", "--name", "demo", "--quiet"],
                       check=True)


def write_results(checkpoint, source, timing, rows, command) -> None:
    t = timing["median_s"]
    lines = [
        "# Energy report: cost and the demo student's SNN/ANN energy", "",
        f"Student `{checkpoint}` (T = {source.timesteps}, input {tuple(source.input_shape)}), "
        f"digits test split ({timing['samples']} samples), batch size {args.batch_size}.", "",
        "## Time of the energy report vs a plain evaluation pass (same run, same batches)", "",
        f"Median over {timing['repeats']} repeats; the three passes alternate within each "
        "repeat.", "",
        "| pass | median time (ms) | / eval |", "|---|---:|---:|",
        f"| plain evaluation (reset_net + forward + argmax) | {1000 * t['eval']:.1f} | 1.00x |",
        f"| `neurokd.energy.estimate` (hooks, SOPs, teacher MACs, pricing) | "
        f"{1000 * t['energy_report']:.1f} | {timing['energy_over_eval']:.2f}x |",
        f"| spikingjelly `DispatchCounterMode` (SynOp + MAC counters) | "
        f"{1000 * t['op_counter']:.1f} | {timing['op_counter_over_eval']:.2f}x |", "",
        f"Median of the per-repeat ratios energy/eval: {timing['median_of_paired_ratios']:.2f}x "
        "(goal <= 1.3x).", "",
        "## SNN / ANN energy per inference under each profile", "",
        "| profile | ANN reference | SNN energy | ANN energy | SNN / ANN | SOPs | SNN MACs | "
        "ANN MACs |", "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(f"| {row['profile']} | {row['ann']} | {row['snn_energy_pj'] / 1e3:.1f} nJ | "
                     f"{row['ann_energy_pj'] / 1e3:.1f} nJ | {row['ratio']:.3f} | "
                     f"{row['synops']:,.0f} | {row['macs']:,.0f} | {row['ann_macs']:,.0f} |")
    lines += ["", f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs (shared with "
              f"other jobs), {torch.get_num_threads()} torch threads; Python "
              f"{platform.python_version()}, torch {torch.__version__}.", "",
              f"Command: `{command}`", ""]
    write_text(RESULTS / "energy.md", "\n".join(lines))
    write_json(RESULTS / "energy.json", {"checkpoint": str(checkpoint), "timing": timing,
                                         "profiles": rows, "command": command})


def main() -> None:
    checkpoint = Path(args.checkpoint)
    if checkpoint == Path("runs/demo/student.pt"):
        ensure_demo(checkpoint)
    source = load_source(checkpoint)
    loader, _, _ = source_batches(source, batch_size=args.batch_size)
    batches = [(x.float(), y) for x, y in loader]
    timing = measure_time(source, batches, args.repeats)
    rows = profile_table(source, [x for x, _ in batches])
    command = "python benchmarks/energy_bench.py " + " ".join(sys.argv[1:])
    write_results(checkpoint, source, timing, rows, command.strip())
    print((RESULTS / "energy.md").read_text())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", default="runs/demo/student.pt")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: steadier timings on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    main()
