"""Loihi deployment check: the demo student in Lava's fixed-point simulator, full digits test split.

Exports the checkpoint with ``neurokd.exporters.export_loihi`` (8-bit netx HDF5), runs every
test sample through ``neurokd.exporters.simulate`` (Lava CPU simulation in .venv-lava,
``Loihi2SimCfg(select_tag="fixed_pt")``) and reports the accuracies of the student (PyTorch,
float), of the bit-accurate integer model and of Lava, the argmax agreement and the share of
identical spikes per layer between Lava and the integer model, and Lava's simulation time per
sample. Trains the demo student first when ``runs/demo/student.pt`` is absent. Writes
lava_agreement.md and .json, or lava_agreement-<dataset>.md and .json for a student of another
data set (e.g. a digits-dvs student, whose input is binary spikes), and
lava_agreement-<student>[-<dataset>].md for a residual student (``--student resnet``: exported as
neurokd's Loihi graph file, run in Lava as a process graph), into benchmarks/runs/results/
(--publish: benchmarks/results/). Networks without a data set (spikingjelly's zoo, a random
resnet19): ``benchmarks/lava_graph_agreement.py``.

Usage: python benchmarks/lava_agreement.py [CHECKPOINT] [--samples N]
Goals: agreement >= 99%, accuracy drop (float -> Lava) <= 1 point.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import results_dir

from neurokd.exporters import export_loihi
from neurokd.exporters.simulation import simulate
from neurokd.files.safe_io import make_folder, write_json, write_text
from neurokd.runtime.progress import PlainReporter
from neurokd.text import pct

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "runs" / "demo" / "student.pt"


def ensure_checkpoint(path: Path) -> None:
    if path.is_file() or path != DEMO:
        return
    print(f"{path} is missing: training the demo student (neurokd distill --name demo)",
          file=sys.stderr)
    subprocess.run([str(Path(sys.executable).with_name("neurokd")), "distill", "--name", "demo",
                    "--quiet"], cwd=ROOT, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", default=str(DEMO))
    parser.add_argument("--samples", type=int, default=None, help="default: the whole split")
    results_dir.add_options(parser)
    args = parser.parse_args()
    checkpoint = Path(args.checkpoint).resolve()
    load = os.getloadavg()
    ensure_checkpoint(checkpoint)
    export = make_folder(ROOT / "benchmarks" / "runs" / "lava") / "student.net"
    started = time.perf_counter()
    exported = export_loihi(checkpoint, export, max_samples=10_000)
    export_seconds = time.perf_counter() - started
    started = time.perf_counter()
    result = simulate(export, samples=args.samples, reporter=PlainReporter())
    wall = time.perf_counter() - started
    drop = exported.float_accuracy - result.accuracy
    rel = os.path.relpath(checkpoint, ROOT)
    command = "python benchmarks/lava_agreement.py" + (f" {rel}" if checkpoint != DEMO else "") \
        + (f" --samples {args.samples}" if args.samples else "")
    figures = {
        "checkpoint": rel, "samples": result.samples, "timesteps": result.timesteps,
        "float_accuracy": exported.float_accuracy, "folded_float_accuracy": result.torch_accuracy,
        "quantized_accuracy": result.quantized_accuracy, "lava_accuracy": result.accuracy,
        "accuracy_drop_points": 100 * drop, "agreement": result.agreement,
        "identical_spikes": result.identical_spikes, "spike_counts": result.spike_counts,
        "quantized_vs_float_argmax": exported.agreement.argmax_agreement,
        "quantized_vs_float_identical_spikes": exported.spike_agreement,
        "lava_seconds_per_sample": result.seconds_per_sample,
        "simulate_wall_seconds": wall, "export_seconds": export_seconds,
        "input_scale": exported.input_scale,
        "layers": [{"name": lay.name, "kind": lay.kind, "scale": lay.scale,
                    "int_range": lay.quantization["int_range"], "clipped": lay.quantization["clipped"],
                    "limit": lay.quantization["limit"], "v_th_mant": lay.neuron.v_th_mant,
                    "v_decay": lay.neuron.v_decay} for lay in exported.layers],
        "command": command, "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs",
        "load": " ".join(f"{x:.2f}" for x in load),
    }
    figures |= {"dataset": result.dataset, "input": exported.encoding,
                "file": exported.graph and f"neurokd Loihi graph file ({exported.graph})",
                "deployed_size": exported.size.to_json() if exported.size else None,
                "size_line": exported.size.lines()[0].strip() if exported.size else ""}
    student = _student(checkpoint)
    stem = "lava_agreement" + ("" if student == "cnn" else f"-{student}") + \
        ("" if result.dataset == "digits" else f"-{result.dataset}")
    out = results_dir.folder(args)
    write_json(out / f"{stem}.json", figures)
    write_text(out / f"{stem}.md", render(figures))
    print(render(figures))


def _student(checkpoint: Path) -> str:
    from neurokd.student.sources import load_source

    return (load_source(checkpoint).config or {}).get("student", "cnn")


def _input(f: dict) -> str:
    if f.get("input", "").startswith("binary"):
        return "binary input spikes per timestep into the first layer (no input quantization)"
    return f"graded 8-bit input (x * {f['input_scale']:.4g})"




def render(f: dict) -> str:
    ok = lambda good: "met" if good else "MISSED"  # noqa: E731
    lines = [
        "# Loihi export in Lava: agreement and accuracy",
        "",
        f"Student `{f['checkpoint']}` (T = {f['timesteps']}), exported to "
        f"{f.get('file') or 'lava-dl netx HDF5'} with "
        f"8-bit weights; {_input(f)}. Lava 0.10 CPU "
        "simulation, `Loihi2SimCfg(select_tag=\"fixed_pt\")`, samples streamed 256 at a time (one Lava run per block).",
        "",
        f"{f.get('dataset', 'digits')} test split, {f['samples']} samples, "
        f"load average {f.get('load', '?')} at the start:",
        "",
        "| quantity | value |",
        "|---|---:|",
        f"| student accuracy (PyTorch, float) | {pct(f['float_accuracy'])} |",
        f"| float twin accuracy (BatchNorm folded, as stored in the file) | "
        f"{pct(f['folded_float_accuracy'])} |",
        f"| integer model accuracy (bit-accurate, neurokd) | {pct(f['quantized_accuracy'])} |",
        f"| Lava accuracy | {pct(f['lava_accuracy'])} |",
        f"| accuracy drop, float -> Lava | {f['accuracy_drop_points']:.2f} pt "
        f"(goal <= 1 pt: {ok(f['accuracy_drop_points'] <= 1)}) |",
        f"| argmax agreement, Lava vs integer model | {pct(f['agreement'])} "
        f"(goal >= 99%: {ok(f['agreement'] >= 0.99)}) |",
        f"| argmax agreement, integer model vs float | {pct(f['quantized_vs_float_argmax'])} |",
        f"| Lava simulation time per sample | {1000 * f['lava_seconds_per_sample']:.1f} ms |",
        "",
        "| layer | identical spikes, Lava vs integer model | spikes in Lava | identical spikes, "
        "integer vs float |",
        "|---|---:|---:|---:|",
    ]
    for name, share in f["identical_spikes"].items():
        lines.append(f"| {name} | {pct(share)} | {f['spike_counts'][name]:,} | "
                     f"{pct(f['quantized_vs_float_identical_spikes'][name])} |")
    lines += ["", "| layer | type | scale | int weights | clipped | vThMant | vDecay | scale set "
              "by |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for lay in f["layers"]:
        lines.append(f"| {lay['name']} | {lay['kind']} | {lay['scale']:.4g} | "
                     f"[{lay['int_range'][0]}, {lay['int_range'][1]}] | {pct(lay['clipped'])} | "
                     f"{lay['v_th_mant']} | {lay['v_decay']} | {lay['limit']} |")
    if f.get("size_line"):
        lines += ["", f"Export's size report: {f['size_line']}"]
    lines += ["", f"Simulation time covers Lava's run calls only (process start-up, Lava import "
              f"and network build excluded: the whole `simulate` took {f['simulate_wall_seconds']:.1f} s). "
              f"Machine: {f['machine']} (shared with other jobs).", "",
              f"Command: `{f['command']}`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
