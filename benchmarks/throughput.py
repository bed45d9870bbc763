"""Training throughput of the CIFAR student on this machine, and torchrun 2-process scaling.

    python benchmarks/throughput.py                   # ResNet-19 student, batch 32, T=4
    python benchmarks/throughput.py --student resnet --steps 20

Measures samples/s of one TSER training step (forward over T steps, backward, SGD update) in a
single process, then the same under `torchrun --nproc_per_node 1` and `2` (gloo, CPU) with
DistributedDataParallel, and reports the 2-vs-1 ratio. Also prints the parameter counts of the
preset models. Writes benchmarks/results/throughput.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from neurokd.config import RunConfig
from neurokd.distributed import world
from neurokd.fileio import write_text
from neurokd.losses import tser_loss
from neurokd.models import build_student, build_teacher, count_parameters

RESULTS = Path(__file__).parent / "results"


def _config(student: str, teacher: str) -> dict:
    return RunConfig(student=student, teacher_arch=teacher, input_shape=[3, 32, 32],
                     num_classes=100).to_dict()


def step_throughput(student: str, batch: int, steps: int, warmup: int = 1) -> dict:
    """Samples/s of this process's training steps (inside torchrun: DDP across the ranks)."""
    from spikingjelly.activation_based import functional

    with world("cpu") as w:
        torch.manual_seed(w.rank)
        model = build_student(_config(student, "resnet18"))
        trained = w.wrap(model, torch.device("cpu"))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        x = torch.randn(batch, 3, 32, 32)
        y = torch.randint(0, 100, (batch,))
        teacher_logits = torch.randn(batch, 100)
        elapsed = 0.0
        for step in range(warmup + steps):
            start = time.perf_counter()
            functional.reset_net(model)
            loss = tser_loss(trained(x), teacher_logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step >= warmup:
                elapsed += time.perf_counter() - start
        total = w.sum(elapsed)[0] / w.size  # mean time over ranks
        return {"world_size": w.size, "rank": w.rank,
                "samples_per_s": w.size * batch * steps / total, "step_s": total / steps}


def torchrun(nproc: int, args: argparse.Namespace) -> dict:
    runner = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, os.cpu_count() // nproc))}
    out = subprocess.run([str(runner), "--standalone", "--nproc_per_node", str(nproc), __file__,
                          "--worker", "--student", args.student, "--batch", str(args.batch),
                          "--steps", str(args.steps)], capture_output=True, text=True, env=env,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="resnet19")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = step_throughput(args.student, args.batch, args.steps)
        if result["rank"] == 0:
            print(json.dumps(result))
        return
    single = step_throughput(args.student, args.batch, args.steps)
    one, two = torchrun(1, args), torchrun(2, args)
    params = {name: count_parameters(build_student(_config(name, "cnn")))
              for name in ("resnet19", "resnet18")}
    params.update({f"teacher {t}": count_parameters(build_teacher(_config("cnn", t)))
                   for t in ("resnet18", "resnet34")})
    lines = [
        "# Training throughput (CPU)", "",
        f"Student `{args.student}` (CIFAR-100 shape, T=4), TSER step with SGD, batch "
        f"{args.batch} per process, {args.steps} timed steps; torch {torch.__version__}, "
        f"{os.cpu_count()} cores.", "",
        "| setting | samples/s | s per step |", "|---|---|---|",
        f"| one process | {single['samples_per_s']:.2f} | {single['step_s']:.2f} |",
        f"| torchrun, 1 process | {one['samples_per_s']:.2f} | {one['step_s']:.2f} |",
        f"| torchrun, 2 processes (gloo) | {two['samples_per_s']:.2f} | {two['step_s']:.2f} |",
        "", f"2-process / 1-process throughput: **{two['samples_per_s'] / one['samples_per_s']:.2f}**"
        " (each process gets half the cores, so CPU scaling is bounded by 2 cores)", "",
        "| model (100 classes) | parameters |", "|---|---|",
        *[f"| {name} | {count:,} |" for name, count in params.items()], "",
        f"Command: `python benchmarks/throughput.py --student {args.student} --batch {args.batch} "
        f"--steps {args.steps}`", "",
    ]
    RESULTS.mkdir(exist_ok=True)
    write_text(RESULTS / "throughput.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
