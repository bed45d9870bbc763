"""The README's demo figures from one command: a fresh demo distill, then its accuracies, SOPs
and SNN / ANN energy under every profile and energy model.

    python benchmarks/figures.py [--threads N] [--publish]     # `make figures`: --threads 1 --publish

Trains the demo student (`neurokd distill --name demo`, the `make demo` job) into
benchmarks/runs/figures/ (runs/demo is left alone), then counts and prices it on the digits
test split exactly as `neurokd energy report` does; exports the same student to Loihi (netx),
runs it in Lava on the whole test split (.venv-lava, `make lava`) and prices the deployed run's
spike counts under the `loihi` profile against the float estimate (`energy report --from-sim`).
Writes figures.md and figures.json into benchmarks/runs/results/ (--publish:
benchmarks/results/), with the threads the distill ran on and the machine's load. The README's
and the docs' demo figures are generated from figures.json (`python tools/gen_docs.py`).

What varies: the wall time with the load; with the torch thread count, the order in which
float sums are reduced, so the trained weights differ in the last bits, a few spikes near
threshold flip and the SOPs, firing rate and (by a sample or two) the accuracies move. The
same thread count on the same machine and torch build reproduces them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import results_dir
import torch
from energy_bench import energy_lines, profile_table
from publish import machine

from neurokd.files.safe_io import make_folder, write_json, write_text
from neurokd.student.inputs import source_batches
from neurokd.student.sources import load_source

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "benchmarks" / "runs" / "figures"


def distill_demo(threads: int | None) -> tuple[Path, float]:
    """The demo job in a subprocess (its own thread choice, as a user's run); wall time."""
    command = [sys.executable, "-m", "neurokd", "distill", "--name", "demo", "--out", str(RUNS),
               "--overwrite", "--quiet"] + (["--threads", str(threads)] if threads else [])
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return RUNS / "demo", time.perf_counter() - started


def commit() -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, cwd=Path(__file__).parent)
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True,
                               text=True, check=True, cwd=Path(__file__).parent).stdout
        return done.stdout.strip() + (" (with uncommitted changes)" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"


def loihi_check(checkpoint: Path) -> dict:
    """The same student on Loihi: its netx export run in Lava on the whole test split (the
    float, integer and Lava accuracies, their agreement), then the deployed run's spike counts
    priced under ``loihi`` against the float estimate on the same samples."""
    from neurokd.energy import estimate_from_options
    from neurokd.exporters import export_loihi
    from neurokd.exporters.simulation import simulate, write_result

    folder = make_folder(RUNS / "loihi")
    started = time.perf_counter()
    exported = export_loihi(checkpoint, folder / "student.net", max_samples=10_000)
    export_s = time.perf_counter() - started
    started = time.perf_counter()
    result = simulate(folder / "student.net")
    simulate_s = time.perf_counter() - started
    counts = write_result(folder / "spike_counts.npz", result)
    report = estimate_from_options(load_source(checkpoint), "loihi", ann="none",
                                   spike_counts=counts)
    return {"samples": result.samples, "float_accuracy": exported.float_accuracy,
            "quantized_accuracy": result.quantized_accuracy, "lava_accuracy": result.accuracy,
            "agreement": result.agreement, "identical_spikes": result.identical_spikes,
            "seconds_per_sample": result.seconds_per_sample, "simulate_wall_s": simulate_s,
            "export_wall_s": export_s, "float_energy_pj": report.snn_energy_pj,
            "deployed_energy_pj": report.deployed.snn_energy_pj}


def figures(threads: int | None) -> dict:
    started_on = machine()
    run, wall = distill_demo(threads)
    metrics = json.loads((run / "metrics.json").read_text())
    source = load_source(run / "student.pt")
    loader, samples, _ = source_batches(source, batch_size=256)
    inputs = [x for x, _ in loader]
    torch.set_num_threads(metrics.get("threads") or torch.get_num_threads())
    rows = profile_table(source, inputs)
    loihi = loihi_check(run / "student.pt")
    return {"run": os.path.relpath(run, ROOT), "distill_wall_s": wall, "samples": samples,
            "teacher_accuracy": metrics["teacher_accuracy"],
            "student_accuracy": metrics["student_accuracy"],
            "firing_rate": metrics["firing_rate"], "threads": metrics.get("threads"),
            "threads_reason": metrics.get("threads_reason"), "profiles": rows, "loihi": loihi,
            "commit": commit(), "torch": torch.__version__, "python": platform.python_version(),
            **started_on, "load_after": " ".join(f"{v:.2f}" for v in os.getloadavg())}


def render(f: dict, command: str) -> str:
    twin = {(r["profile"], r["energy_model"]): r["ratio"] for r in f["profiles"]
            if r["ann"] == "ReLU twin of the student"}
    profiles = list(dict.fromkeys(profile for profile, _ in twin))
    compute = next(r for r in f["profiles"] if r["energy_model"] == "compute")
    lines = [
        "# The README's demo figures", "",
        f"A fresh `neurokd distill --name demo` ({f['run']}), counted on the digits test split "
        f"({f['samples']} samples).", "",
        "| figure | value |", "|---|---|",
        f"| demo distill wall time | {f['distill_wall_s']:.1f} s |",
        f"| teacher, student (TSER, T=4) test accuracy | {100 * f['teacher_accuracy']:.2f}%, "
        f"{100 * f['student_accuracy']:.2f}% |",
        f"| student mean firing rate | {f['firing_rate']:.4f} |",
        f"| SOPs per inference (all layers), encoding-layer MACs | {compute['synops']:,.0f}, "
        f"{compute['macs']:,.0f} |"]
    for model in dict.fromkeys(m for _, m in twin):
        lines.append(f"| SNN / ANN-twin energy, `{model}`: {', '.join(profiles)} | "
                     + ", ".join(f"{twin[(p, model)]:.3f}" for p in profiles) + " |")
    lava = f["loihi"]
    lines += [f"| Loihi (netx) in Lava, {lava['samples']} samples: argmax agreement with the "
              f"integer model; identical spikes per layer | {100 * lava['agreement']:.2f}%; "
              + ", ".join(f"{100 * v:.2f}%" for v in lava["identical_spikes"].values()) + " |",
              f"| accuracy: float student, 8-bit integer model, Lava | "
              f"{100 * lava['float_accuracy']:.2f}%, {100 * lava['quantized_accuracy']:.2f}%, "
              f"{100 * lava['lava_accuracy']:.2f}% |",
              f"| Lava CPU simulation time per sample; whole simulation | "
              f"{1000 * lava['seconds_per_sample']:.1f} ms; {lava['simulate_wall_s']:.1f} s |",
              f"| `loihi` energy per inference: deployed (Lava spike counts), float estimate | "
              f"{lava['deployed_energy_pj'] / 1e6:.3f} µJ, {lava['float_energy_pj'] / 1e6:.3f} µJ |"]
    lines += ["", *energy_lines(f["profiles"]),
              f"Threads: {f['threads']} ({f['threads_reason']}). Machine: {f['machine']}; "
              f"{f['load']} before the run, {f['load_after']} after. Python {f['python']}, "
              f"torch {f['torch']}, commit {f['commit']}.", "",
              "The thread count changes the order of float reductions, so SOPs, firing rate "
              "and accuracies can differ in another setting; the same threads on the same "
              "machine reproduce them. Wall time depends on the load.", "",
              f"Command: `{command}`", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of the distill (default: neurokd's own choice)")
    results_dir.add_options(parser)
    args = parser.parse_args()
    out = results_dir.folder(args)
    result = figures(args.threads)
    command = "python benchmarks/figures.py" + " ".join([""] + sys.argv[1:])
    write_json(out / "figures.json", result | {"command": command})
    text = render(result, command)
    write_text(out / "figures.md", text)
    print(text)


if __name__ == "__main__":
    main()
