"""Does the rate term take a student below break-even, and what does a sweep find?

    python benchmarks/energy_aware.py --publish                 # everything, ~10 min on 2 cores
    python benchmarks/energy_aware.py --parts demo --epochs 10  # the plain-vs-rate table only
    python benchmarks/energy_aware.py --parts demo --dataset digits-dvs --publish  # event input

Parts (docs/energy-aware.md):
  demo    digits, tser, one shared teacher: plain vs `--rate-target break-even` under
          loihi/compute and 45nm-fp32/memory; per layer its test input rate vs break-even, the
          SNN/ANN energy ratio and test accuracy (energy report's numbers: metrics.json
          `energy`, and the same pricer on the plain run's student.pt).
  sweep   `neurokd sweep` of --trials trials on digits (rate weight, margin, T, method) priced
          on 45nm-fp32/memory: its Pareto front and plot.
  workers the same sweep spec with --worker-trials trials run by one process, then by two
          processes on one storage: wall time of each.
Writes energy_aware.md / .json / -pareto.png into benchmarks/runs/results/ (`--publish`:
benchmarks/results/). Every run uses --threads 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import results_dir  # noqa: E402

from neurokd.cli.rate_pricing import EnergyPricer  # noqa: E402
from neurokd.config import RunConfig  # noqa: E402
from neurokd.train.distillation import distill, train_teacher  # noqa: E402

HERE = Path(__file__).parent
PRICINGS = (("loihi", "compute"), ("45nm-fp32", "memory"))
SWEEP_SPEC = """\
[sweep]
trials = {trials}
sampler = "tpe"
seed = 0
profile = "45nm-fp32"
energy_model = "memory"

[base]
dataset = "digits"
epochs = {epochs}
teacher = "{teacher}"
threads = 1
rate_target = "break-even"
energy_model = "memory"

[space]
method = ["tser", "kd"]
rate_weight = {{low = 1.0, high = 1000.0, log = true}}
rate_margin = {{low = 0.5, high = 1.0}}
timesteps = [2, 4]
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="demo,sweep,workers")
    parser.add_argument("--epochs", type=int, default=30, help="student epochs of the demo")
    parser.add_argument("--weights", default="100,1000",
                        help="the demo's rate runs: --rate-weight values, each W or W@M "
                        "(M: its --rate-margin, default 0.9)")
    parser.add_argument("--dataset", default="digits",
                        help="the demo part's data set (digits, digits-dvs: event input); the "
                        "sweep and workers parts run on digits")
    parser.add_argument("--sweep-epochs", type=int, default=8)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--worker-trials", type=int, default=6)
    parser.add_argument("--workdir", default=str(HERE / "runs" / "energy_aware"))
    results_dir.add_options(parser)
    return parser.parse_args()


def teacher_of(workdir: Path, dataset: str = "digits") -> Path:
    name = "teacher" if dataset == "digits" else f"teacher-{dataset}"
    path = workdir / name / "teacher.pt"
    if not path.exists():
        train_teacher(RunConfig(out=str(workdir), name=name, dataset=dataset, threads=1))
    return path


def demo_key(dataset: str) -> str:
    """Where a data set's demo table lives in energy_aware.json."""
    return "demo" if dataset == "digits" else f"demo-{dataset}"


DEFAULT_MARGIN = RunConfig().rate_margin


def rate_settings(text: str) -> list[tuple[float, float]]:
    """``"100,300@0.8"`` -> ``[(100.0, 0.9), (300.0, 0.8)]``: (weight, margin) per rate run."""
    settings = []
    for item in text.split(","):
        weight, _, margin = item.partition("@")
        settings.append((float(weight), float(margin) if margin else DEFAULT_MARGIN))
    return settings


def demo(workdir: Path, dataset: str, epochs: int,
           weights: list[tuple[float, float]]) -> list[dict]:
    rows = []
    teacher = teacher_of(workdir, dataset)
    workdir = workdir if dataset == "digits" else workdir / dataset
    common = {"out": str(workdir), "teacher": str(teacher), "epochs": epochs, "threads": 1,
              "dataset": dataset}
    plain = distill(RunConfig(name="plain", **common), overwrite=True)
    for profile, model in PRICINGS:
        pricer = EnergyPricer.of(profile, model, "twin")
        rows.append(_row("plain", profile, model, plain.metrics,
                         pricer.report(plain.checkpoint)))
        print(rows[-1]["summary"], flush=True)
        for weight, margin in weights:
            tag = f"w{weight:g}" + ("" if margin == DEFAULT_MARGIN else f"-m{margin:g}")
            config = RunConfig(name=f"rate-{profile}-{model}-{tag}", rate_target="break-even",
                               rate_weight=weight, rate_margin=margin, profile=profile,
                               energy_model=model, **common)
            result = distill(config, overwrite=True, pricer=pricer)
            kind = f"rate break-even, w={weight:g}" + (
                "" if margin == DEFAULT_MARGIN else f", m={margin:g}")
            rows.append(_row(kind, profile, model, result.metrics,
                             result.metrics["energy"], result.metrics["rate"]))
            print(rows[-1]["summary"], flush=True)
    return rows


def _row(kind: str, profile: str, model: str, metrics: dict, energy: dict,
         rate: dict | None = None) -> dict:
    layers = {name: {**row, "target": None if rate is None else rate["targets"].get(name)}
              for name, row in energy["layers"].items() if row["break_even"] is not None}
    summary = (f"{kind:16s} {profile}/{model}: acc {100 * metrics['student_accuracy']:.2f}%, "
               f"ratio {energy['ratio']:.3f}, " + ", ".join(
                   f"{n} {r['rate']:.3f}/{r['break_even']:.3f}" for n, r in layers.items()))
    return {"kind": kind, "profile": profile, "energy_model": model,
            "accuracy": metrics["student_accuracy"], "ratio": energy["ratio"],
            "snn_energy_pj": energy["snn_energy_pj"], "ann_energy_pj": energy["ann_energy_pj"],
            "layers": layers, "untargeted": None if rate is None else rate["untargeted"],
            "summary": summary}


def sweep(workdir: Path, spec_text: str, name: str, workers: int) -> dict:
    folder = workdir / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    spec = folder.parent / f"{name}.toml"
    spec.write_text(spec_text)
    command = [sys.executable, "-m", "neurokd", "sweep", str(spec), "--out", str(folder),
               "--quiet"]
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(workers)]
    outs = [p.communicate() for p in procs]
    wall = time.perf_counter() - started
    if any(p.returncode for p in procs):
        raise SystemExit(f"sweep {name} failed: {outs}")
    # the machine's other jobs share its cores: their load says how far the times compare
    return {"folder": str(folder), "workers": workers, "wall_time_s": round(wall, 1),
            "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
            "cores": os.cpu_count(),
            "command": " ".join(["neurokd", *command[3:]]),
            "pareto_md": (folder / "pareto.md").read_text(),
            "trials": (folder / "trials.csv").read_text().count("\n") - 1,
            "said": [o.strip() for o, _ in outs]}


def main() -> None:
    args = parse_args()
    parts = args.parts.split(",")
    workdir = Path(args.workdir)
    out = results_dir.folder(args)
    previous = out / "energy_aware.json"  # the parts not run now are kept
    result: dict = json.loads(previous.read_text()) if previous.exists() else {}
    result.setdefault("commands", {})
    if "command" in result:  # a file of the first version: one command for every part
        old = result.pop("command")
        result["commands"].update({p: old for p in ("demo", "sweep", "workers") if p in result})
    command = "python benchmarks/energy_aware.py " + " ".join(sys.argv[1:])
    result["commands"].update({demo_key(args.dataset) if p == "demo" else p: command
                               for p in parts})
    if "demo" in parts:
        result[demo_key(args.dataset)] = demo(workdir, args.dataset, args.epochs,
                                              rate_settings(args.weights))
        write(result, out)  # each part as soon as it is measured
    teacher = teacher_of(workdir)
    if "sweep" in parts:
        text = SWEEP_SPEC.format(trials=args.trials, epochs=args.sweep_epochs,
                                 teacher=teacher.resolve())
        result["sweep"] = sweep(workdir, text, "sweep", 1)
        shutil.copy(Path(result["sweep"]["folder"]) / "pareto.png", out / "energy_aware-pareto.png")
        write(result, out)
    if "workers" in parts:
        text = SWEEP_SPEC.format(trials=args.worker_trials, epochs=args.sweep_epochs,
                                 teacher=teacher.resolve())
        result["workers"] = [sweep(workdir, text, f"workers{n}", n) for n in (1, 2)]
        write(result, out)


def write(result: dict, out: Path) -> None:
    root = str(HERE.parent.resolve()) + "/"  # paths as seen from the repository
    (out / "energy_aware.json").write_text(json.dumps(result, indent=2).replace(root, "") + "\n")
    (out / "energy_aware.md").write_text(markdown(result).replace(root, ""))
    print(f"wrote {out / 'energy_aware.md'}", flush=True)


def markdown(result: dict) -> str:
    lines = ["# Energy-aware distillation (digits, digits-dvs)", "",
             "Every run: cnn student width 16, T=4, tser, one shared teacher per data set, "
             "--threads 1, 2 shared CPU cores; break-even targets repriced before every epoch. "
             "docs/energy-aware.md explains the term and the sweep.", ""]
    commands = result.get("commands", {})
    for key in [k for k in result if k == "demo" or k.startswith("demo-")]:
        dataset = "digits" if key == "demo" else key[len("demo-"):]
        lines += [f"## {dataset}: plain tser vs `--rate-target break-even` (ANN: ReLU twin)",
                  "", f"    {commands.get(key, '')}", "",
                  "Per layer: test input rate / break-even rate (energy report's numbers; "
                  "**bold**: above break-even).", "",
                  "| run | profile/model | test accuracy | SNN/ANN energy | layers |",
                  "|---|---|---|---|---|"]
        for row in result[key]:
            layers = ", ".join(
                (f"{n} {r['rate']:.3f}/{r['break_even']:.3f}" if r["below"] else
                 f"**{n} {r['rate']:.3f}/{r['break_even']:.3f}**")
                for n, r in row["layers"].items())
            lines.append(f"| {row['kind']} | {row['profile']}/{row['energy_model']} | "
                         f"{100 * row['accuracy']:.2f}% | {row['ratio']:.3f} | {layers} |")
        lines.append("")
    if "sweep" in result:
        s = result["sweep"]
        lines += [f"## Sweep: {s['trials']} trials, Pareto front", "",
                  f"    {commands.get('sweep', '')}", "", "runs", "", f"    {s['command']}", "",
                  f"Wall time {s['wall_time_s']:.0f} s (one worker).", "", s["pareto_md"],
                  "![Pareto front](energy_aware-pareto.png)", ""]
    if "workers" in result:
        lines += ["## One worker vs two on one storage", "", f"    {commands.get('workers', '')}",
                  "", "The same spec (`[sweep] trials` smaller) run by one `neurokd sweep`, then "
                  "by two started together on one SQLite storage.", "",
                  "| workers | trials | wall time (s) | 1-min load average (start, end) "
                  "| cores |", "|---|---|---|---|---|"]
        lines += [f"| {w['workers']} | {w['trials']} | {w['wall_time_s']:.0f} | "
                  + (", ".join(f"{x:g}" for x in w["load_average"]) if "load_average" in w
                     else "—") + f" | {w.get('cores', '—')} |"
                  for w in result["workers"]]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
