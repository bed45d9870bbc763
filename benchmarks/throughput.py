"""Training throughput of the CIFAR student on this machine, and torchrun 2-process scaling.

    python benchmarks/throughput.py                   # ResNet-19 student, batch 32, T=4
    python benchmarks/throughput.py --student resnet --steps 20 --repeats 3

Measures samples/s of a TSER training step (forward over T steps, backward, SGD update) under
`torchrun --nproc_per_node 1` and `2` (gloo, CPU, DistributedDataParallel) and reports the
2-vs-1 ratio. The comparison is made fair in three ways:

- the same global work: `--batch` is the global batch, split across the processes (2 x 16 vs
  1 x 32), so both settings do the same arithmetic per step;
- the same cores: every process gets cores / processes intra-op threads (set explicitly with
  torch.set_num_threads, not left to torchrun, which forces 1), so neither setting
  oversubscribes the CPU by itself. On a loaded machine a 2-thread process can still be much
  slower than a 1-thread one (its threads wait for each other while the scheduler runs other
  users' work), so one process is also measured with 1 thread and the ratio is given against
  the faster single-process setting as well;
- warm-up excluded: `--warmup` steps run first; timing starts after a barrier and ends after a
  barrier, so it is the wall time of the slowest process.

The machine is shared, so the settings alternate for `--repeats` rounds and the load average
before and after each measurement is recorded. Also lists the parameter counts of the preset
models. Writes (into benchmarks/runs/results/; --publish: benchmarks/results/) throughput.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import results_dir
import torch

from neurokd.config import RunConfig
from neurokd.files.safe_io import write_text
from neurokd.losses import tser_loss
from neurokd.models import build_student, build_teacher, count_parameters
from neurokd.train.distributed import end_worker, world


def _config(student: str, teacher: str) -> dict:
    return RunConfig(student=student, teacher_arch=teacher, input_shape=[3, 32, 32],
                     num_classes=100).to_dict()


def step_throughput(student: str, global_batch: int, steps: int, warmup: int,
                    threads: int) -> dict:
    """Samples/s of the whole job (all ranks): global batch x steps / slowest rank's time."""
    import torch.distributed as dist
    from spikingjelly.activation_based import functional

    torch.set_num_threads(threads)
    with world("cpu") as w:
        batch = global_batch // w.size
        torch.manual_seed(w.rank)
        model = build_student(_config(student, "resnet18"))
        trained = w.wrap(model, torch.device("cpu"))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        x = torch.randn(batch, 3, 32, 32)
        y = torch.randint(0, 100, (batch,))
        teacher_logits = torch.randn(batch, 100)

        def step() -> None:
            functional.reset_net(model)
            loss = tser_loss(trained(x), teacher_logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        for _ in range(warmup):
            step()
        if w.active:
            dist.barrier()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        if w.active:
            dist.barrier()
        elapsed = torch.tensor([time.perf_counter() - start], dtype=torch.float64)
        if w.active:
            dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
        elapsed = float(elapsed)
        return {"processes": w.size, "rank": w.rank, "threads_per_process":
                torch.get_num_threads(), "batch_per_process": batch,
                "samples_per_s": global_batch * steps / elapsed, "step_s": elapsed / steps}


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def torchrun(nproc: int, threads: int, args: argparse.Namespace) -> dict:
    runner = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    before = load_average()
    out = subprocess.run([str(runner), "--standalone", "--nproc_per_node", str(nproc), __file__,
                          "--worker", "--student", args.student, "--batch", str(args.batch),
                          "--steps", str(args.steps), "--warmup", str(args.warmup),
                          "--threads", str(threads)],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"torchrun with {nproc} process(es) failed:\n"
                         + "\n".join(out.stderr.strip().splitlines()[-15:]))
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"  {nproc} process(es) x {threads} thread(s): {result['samples_per_s']:.2f} "
          f"samples/s, {result['step_s']:.2f} s/step (load {before} -> {load_average()})",
          flush=True)
    return {**result, "load_before": before, "load_after": load_average()}


def parameter_counts() -> dict[str, int]:
    counts = {f"student {name}": count_parameters(build_student(_config(name, "cnn")))
              for name in ("resnet19", "resnet18")}
    counts.update({f"teacher {t}": count_parameters(build_teacher(_config("cnn", t)))
                   for t in ("resnet18", "resnet34")})
    return counts


def report(args: argparse.Namespace, rounds: list[dict], counts: dict[str, int],
           started: str) -> str:
    cores = os.cpu_count() or 1
    two = [r[(2, max(1, cores // 2))]["samples_per_s"] for r in rounds]
    ratios = [x / r[(1, cores)]["samples_per_s"] for x, r in zip(two, rounds, strict=True)]
    best_single = [x / max(r[(1, cores)]["samples_per_s"], r[(1, 1)]["samples_per_s"])
                   for x, r in zip(two, rounds, strict=True)]
    lines = [
        "# Training throughput (CPU)", "",
        f"Student `{args.student}` (CIFAR-100 shape 3x32x32, 100 classes, T=4), one TSER step "
        f"with SGD, global batch {args.batch} (split over the processes), {args.warmup} warm-up "
        f"steps excluded, {args.steps} timed steps; torch {torch.__version__}, "
        f"{os.cpu_count()} cores shared with other users (load average = 1, 5, 15 min; "
        f"started {started}).", "",
        "| round | setting | samples/s | s per step | load before | load after |",
        "|---|---|---|---|---|---|",
    ]
    for i, by_setting in enumerate(rounds, 1):
        for (nproc, _), r in by_setting.items():
            lines.append(
                f"| {i} | {nproc} process{'es' if nproc > 1 else ''} x "
                f"{r['threads_per_process']} thread{'s' if r['threads_per_process'] > 1 else ''}"
                f" (batch {r['batch_per_process']} each) | {r['samples_per_s']:.2f} | "
                f"{r['step_s']:.2f} | {r['load_before']} | {r['load_after']} |")
    lines += [
        "", f"2-process / 1-process throughput, the same {cores} cores and global batch, per "
        "round: " + ", ".join(f"{x:.2f}" for x in ratios)
        + f"; median **{statistics.median(ratios):.2f}**. This is what splitting one CPU's work "
        "into DDP replicas over gloo gains or costs, not a multi-machine speed-up. The 1-thread "
        "row shows how the single process fares without intra-op threads: when it beats the "
        f"{cores}-thread row, the machine's other load is making the threads wait for each "
        "other, and the ratio then mostly measures that (2 processes over the faster "
        "single-process setting: " + ", ".join(f"{x:.2f}" for x in best_single)
        + f"; median {statistics.median(best_single):.2f}).", "",
        "| model (100 classes) | parameters |", "|---|---|",
        *[f"| {name} | {count:,} |" for name, count in counts.items()], "",
        f"Command: `python benchmarks/throughput.py --student {args.student} --batch "
        f"{args.batch} --steps {args.steps} --warmup {args.warmup} --repeats {args.repeats}`",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="resnet19")
    parser.add_argument("--batch", type=int, default=32, help="global batch, split over processes")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    results_dir.add_options(parser)
    args = parser.parse_args()
    if args.worker:
        result = step_throughput(args.student, args.batch, args.steps, args.warmup, args.threads)
        if result["rank"] == 0:
            print(json.dumps(result))
        end_worker(0)  # the gloo group cannot be torn down cleanly at exit (see end_worker)
        return
    if args.batch % 2:
        raise SystemExit("--batch must be even: it is split over 1 and 2 processes")
    cores = os.cpu_count() or 1
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rounds = []
    for i in range(args.repeats):
        print(f"round {i + 1}/{args.repeats}", flush=True)
        settings = [(1, cores), (1, 1), (2, max(1, cores // 2))] if cores > 1 else [(1, 1), (2, 1)]
        rounds.append({(n, t): torchrun(n, t, args) for n, t in dict.fromkeys(settings)})
    text = report(args, rounds, parameter_counts(), started)
    write_text(results_dir.folder(args) / "throughput.md", text)
    print(text)


if __name__ == "__main__":
    main()
