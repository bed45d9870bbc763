"""Figures for the distillation core, measured in one run on this machine.

1. Wall time of the demo job (`neurokd distill --name demo`, i.e. what `make demo` runs once the
   environment exists) and its teacher / student accuracies.
2. Training-step time of TSER vs CE on the same student and batches, as a ratio (goal <= 1.05).

Writes (into benchmarks/runs/results/; --publish: benchmarks/results/) distill_speed.md. Usage: python benchmarks/distill_speed.py [--steps N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import results_dir
import torch

from neurokd.config import RunConfig
from neurokd.data import load_data, make_loader
from neurokd.files.safe_io import write_text
from neurokd.losses import get_loss
from neurokd.models import build_student, build_teacher
from neurokd.train.evaluation import predict


def demo_wall_time() -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "neurokd", "distill", "--name", "demo", "--out", out,
                        "--quiet"], check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        metrics = json.loads((Path(out) / "demo" / "metrics.json").read_text())
    return wall, metrics


def step_times(steps: int) -> dict[str, float]:
    """Mean seconds per optimiser step for each loss, interleaved so drift hits both alike."""
    from spikingjelly.activation_based import functional

    data = load_data("digits")
    config = RunConfig(input_shape=list(data.input_shape), num_classes=10).to_dict()
    teacher = build_teacher(config).eval()
    batches = [(x, y) for x, y in make_loader(data.train, 64, shuffle=True)][:8]
    with torch.no_grad():
        cached = [predict(teacher, x) for x, _ in batches]  # as distill caches them
    losses = {"ce": get_loss("ce"), "tser": get_loss("tser", alpha=0.5, tau=1.0, lam=0.05)}
    students = {}
    for name in losses:
        torch.manual_seed(0)
        students[name] = build_student(config)
    optims = {n: torch.optim.Adam(m.parameters(), lr=2e-3) for n, m in students.items()}
    totals = dict.fromkeys(losses, 0.0)
    for step in range(steps + 5):
        for name, loss_fn in losses.items():
            x, y = batches[step % len(batches)]
            start = time.perf_counter()
            functional.reset_net(students[name])
            loss = loss_fn(students[name](x), cached[step % len(batches)], y)
            optims[name].zero_grad()
            loss.backward()
            optims[name].step()
            if step >= 5:  # warm-up steps are not timed
                totals[name] += time.perf_counter() - start
    return {name: total / steps for name, total in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    results_dir.add_options(parser)
    args = parser.parse_args()
    wall, metrics = demo_wall_time()
    times = step_times(args.steps)
    ratio = times["tser"] / times["ce"]
    lines = [
        "# Distillation core figures", "",
        f"Machine: {torch.get_num_threads()} torch threads, torch {torch.__version__}, CPU.", "",
        "| figure | value |", "|---|---|",
        f"| demo wall time (`neurokd distill --name demo`) | {wall:.1f} s (goal <= 90 s) |",
        f"| demo teacher accuracy (test) | {100 * metrics['teacher_accuracy']:.2f}% |",
        f"| demo student accuracy (test, TSER, T=4) | {100 * metrics['student_accuracy']:.2f}% |",
        f"| demo mean firing rate | {metrics['firing_rate']:.4f} |",
        f"| CE step (batch 64, spiking CNN, T=4) | {1000 * times['ce']:.2f} ms |",
        f"| TSER step (same student and batches) | {1000 * times['tser']:.2f} ms |",
        f"| TSER / CE step-time ratio | {ratio:.3f} (goal <= 1.05) |", "",
        f"Command: `python benchmarks/distill_speed.py --steps {args.steps}`", "",
    ]
    write_text(results_dir.folder(args) / "distill_speed.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
