"""The CIFAR recipe's GPU path, checked: TSER training with and without --amp, spikingjelly's
neuron kernels against its PyTorch kernel, samples/s, peak GPU memory, torchrun with nccl.

    python benchmarks/gpu_check.py                      # on a CUDA machine: benchmarks/runs/results/gpu.md
    python benchmarks/gpu_check.py --device cpu --tiny --out /tmp/gpu.md    # what the tests run

Every check runs neurokd's own code on synthetic data written in CIFAR's official
python-pickle layout (random images; accuracy means nothing, the path does):

- `training`: `neurokd.distill` with the `cifar100-resnet19` preset (spiking ResNet-19,
  ResNet-34 teacher, SGD, batch 128, crop + flip) for one epoch, `--amp` off and on: a finite
  loss, samples/s of the student's training steps (TSER with the teacher on every augmented
  batch, data loading included, after `--warmup` steps) and its peak GPU memory.
- `kernels`: one LIF layer of the students (ATan surrogate, hard reset, detached reset) on a
  ResNet-19 first-stage feature map, in a fresh process per implementation
  (SJ_LIF_CUDA_IMPLEMENTATION = torch, cuda, triton) against spikingjelly's PyTorch reference
  (autograd through its Python LIF): spikes, final membrane potential and input gradients.
  Tolerance: neurons whose spike trains differ at most 1e-6 of all (a threshold crossing
  within rounding may flip); elsewhere |dv| and |dgrad| <= 1e-5 + 1e-4 |reference|.
- `torchrun`: `torchrun --nproc_per_node 1 -m neurokd distill ...` (neurokd runs a one-process
  launch as a world of one, so it joins no process group), and a torchrun worker that does
  join one (nccl on CUDA, gloo on the CPU), wraps the ResNet-19 student in
  DistributedDataParallel, trains TSER steps and checks an all_reduce.

`--tiny` (CPU tests) uses the cifar10-resnet19 preset (the same recipe, 10 classes), 20
images, batch 4 and a small feature map. What needs CUDA (--amp, the cuda and triton kernels,
peak GPU memory, nccl) is reported as not run on a machine without it.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import results_dir
import torch
from gpu_kernels import ATOL, RTOL, SPIKE_TOLERANCE, check_kernels

HERE = Path(__file__).resolve().parent


@dataclass
class Check:
    name: str
    needs_cuda: bool
    status: str = "not run"  # passed / failed / not run
    figures: dict = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class Scale:
    preset: str
    dataset: str
    images: int  # train split (before the validation share) and test split each
    val_fraction: float
    batch_size: int
    warmup: int
    feature_map: tuple[int, ...]  # [T, B, C, H, W] of the kernel check


FULL = Scale("cifar100-resnet19", "cifar100", 2560, 0.1, 128, 3, (4, 32, 128, 32, 32))
TINY = Scale("cifar10-resnet19", "cifar10", 20, 0.5, 4, 1, (4, 2, 8, 8, 8))


def write_synthetic_cifar(root: Path, dataset: str, images: int, seed: int = 0) -> Path:
    """Random uint8 images with balanced labels in the official python-pickle layout, so the
    checks read them with neurokd's own CIFAR loader."""
    from torchvision import datasets

    from neurokd.data.images import CIFAR_FOLDERS

    spec = datasets.CIFAR100 if dataset == "cifar100" else datasets.CIFAR10
    classes, key = (100, b"fine_labels") if dataset == "cifar100" else (10, b"labels")
    folder = root / CIFAR_FOLDERS[dataset]
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)

    def dump(name: str, entry: dict) -> None:
        with open(folder / name, "wb") as handle:
            pickle.dump(entry, handle, protocol=2)

    for names, count in ((spec.train_list, images), (spec.test_list, images)):
        shares = np.array_split(np.arange(count), len(names))
        for (name, _md5), share in zip(names, shares, strict=True):
            dump(name, {b"data": rng.integers(0, 256, (len(share), 3072), dtype=np.uint8),
                        key: [int(i) % classes for i in share]})
    dump(spec.meta["filename"],
         {spec.meta["key"].encode(): [f"class{i}".encode() for i in range(classes)]})
    return root


class StepTimer:
    """A reporter for ``distill``: times the student's training steps (the fit loop reports
    each one) and keeps the peak GPU memory of its training epoch."""

    def __init__(self, cuda: bool):
        self.cuda, self.active, self.stamps, self.peak_bytes = cuda, False, [], None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def start(self, description: str, total: int):
        self.active = description.startswith("student epoch")
        if self.active:
            if self.cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            self.stamps = [time.perf_counter()]
        return description

    def advance(self, task, steps: int = 1, status: str | None = None) -> None:
        if self.active and steps:
            if self.cuda:
                torch.cuda.synchronize()
            self.stamps.append(time.perf_counter())

    def finish(self, task, summary: str = "") -> None:
        if self.active and self.cuda:
            self.peak_bytes = torch.cuda.max_memory_allocated()
        self.active = False

    def note(self, message: str) -> None:
        return None

    def epoch(self, phase: str, record: dict) -> None:
        return None

    def samples_per_s(self, batch: int, warmup: int) -> float | None:
        timed = self.stamps[warmup:]
        if len(timed) < 2:
            return None
        return batch * (len(timed) - 1) / (timed[-1] - timed[0])


def run_config(scale: Scale, data_dir: Path, out: Path, name: str, device: str, **values):
    from neurokd.config import RunConfig

    overrides = dict(dataset=scale.dataset, data_dir=str(data_dir), out=str(out), name=name,
                     device=device, epochs=1, teacher_epochs=1, batch_size=scale.batch_size,
                     val_fraction=scale.val_fraction, **values)
    return RunConfig.from_sources(None, overrides, preset=scale.preset)


def check_training(scale: Scale, data_dir: Path, out: Path, device: str) -> list[Check]:
    from neurokd.train.distillation import distill

    cuda = device == "cuda"
    checks, teacher = [], None
    for amp in (False, True):
        check = Check("training, --amp" if amp else "training, float32", needs_cuda=amp)
        checks.append(check)
        if amp and not cuda:
            check.note = "--amp is float16 autocast, CUDA only"
            continue
        timer = StepTimer(cuda)
        config = run_config(scale, data_dir, out, f"amp-{amp}", device, amp=amp,
                            teacher=teacher)
        started = time.perf_counter()
        result = distill(config, timer)
        teacher = teacher or str(result.run_dir / "teacher.pt")  # the amp run reuses it
        losses = [r["loss"] for r in result.metrics["history"]]
        check.figures = {
            "samples_per_s": timer.samples_per_s(scale.batch_size, scale.warmup),
            "timed_steps": max(len(timer.stamps) - 1 - scale.warmup, 0),
            "peak_gpu_memory_gib": timer.peak_bytes / 2**30 if timer.peak_bytes else None,
            "student_loss": losses[-1], "wall_s": round(time.perf_counter() - started, 1),
            "student_parameters": result.metrics["student_parameters"]}
        check.status = "passed" if all(np.isfinite(losses)) else "failed"
    return checks


def check_torchrun(scale: Scale, data_dir: Path, out: Path, device: str,
                   teacher: str | None) -> list[Check]:
    runner = str(Path(sys.executable).with_name("torchrun"))
    base = [runner, "--standalone", "--nproc_per_node", "1"]
    launch = Check("torchrun -m neurokd distill, 1 process", needs_cuda=False)
    config = run_config(scale, data_dir, out, "torchrun", device, teacher=teacher)
    toml = out / "torchrun.toml"
    from neurokd.config import to_toml

    toml.write_text(to_toml({k: v for k, v in config.to_dict().items()
                             if k not in ("input_shape", "num_classes")}))
    done = subprocess.run(base + ["-m", "neurokd", "distill", "--config", str(toml), "--quiet"],
                          capture_output=True, text=True)
    metrics = out / "torchrun" / "metrics.json"
    launch.status = "passed" if done.returncode == 0 and metrics.exists() else "failed"
    launch.figures = {"exit_code": done.returncode}
    if metrics.exists():
        launch.figures["world_size"] = json.loads(metrics.read_text())["world_size"]
    if launch.status == "failed":
        launch.note = (done.stderr.strip().splitlines() or ["no output"])[-1]
    backend = "nccl" if device == "cuda" else "gloo"
    group = Check(f"torchrun worker in a {backend} group, DDP TSER steps",
                  needs_cuda=backend == "nccl")
    done = subprocess.run(base + [__file__, "--ddp-worker", "--device", device]
                          + (["--tiny"] if scale is TINY else []), capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        group.figures = json.loads(lines[-1])
        group.status = "passed" if group.figures["all_reduce_ok"] and \
            np.isfinite(group.figures["loss"]) else "failed"
    else:
        group.status = "failed"
        group.note = (done.stderr.strip().splitlines() or ["no output"])[-1]
    if backend == "nccl":
        return [launch, group]
    nccl = Check("torchrun worker in a nccl group, DDP TSER steps", needs_cuda=True,
                 note="nccl needs CUDA; the gloo group above ran the same worker")
    return [launch, group, nccl]


def ddp_worker(device: str, tiny: bool) -> None:
    """Inside torchrun: join a process group, train DDP-wrapped TSER steps, check all_reduce."""
    import torch.distributed as dist

    from neurokd.losses import tser_loss
    from neurokd.models import build_student

    scale = TINY if tiny else FULL
    cuda = device == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    target = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    config = run_config(scale, Path("."), Path("."), "ddp", device).to_dict()
    classes = 100 if scale.dataset == "cifar100" else 10
    model = build_student({**config, "input_shape": [3, 32, 32], "num_classes": classes})
    model = model.to(target)
    wrapped = torch.nn.parallel.DistributedDataParallel(model, device_ids=[target.index]
                                                        if cuda else None)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(scale.batch_size, 3, 32, 32, device=target)
    y = torch.randint(0, classes, (scale.batch_size,), device=target)
    teacher_logits = torch.randn(scale.batch_size, classes, device=target)
    from spikingjelly.activation_based import functional

    for _ in range(2):
        functional.reset_net(model)
        loss = tser_loss(wrapped(x), teacher_logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    ones = torch.ones(4, device=target)
    dist.all_reduce(ones)
    report = {"backend": dist.get_backend(), "world_size": dist.get_world_size(),
              "loss": float(loss), "all_reduce_ok": bool((ones == dist.get_world_size()).all())}
    print(json.dumps(report), flush=True)
    # As neurokd.train.distributed.end_worker: torch 2.14's process group can abort at interpreter
    # teardown after DDP, once everything is written.
    sys.stderr.flush()
    os._exit(0)


def environment(device: str) -> dict:
    from importlib.metadata import version

    cuda = torch.cuda.is_available()
    return {"torch": torch.__version__, "cuda_build": torch.version.cuda,
            "cuda_available": cuda, "device": device,
            "gpu": torch.cuda.get_device_name(0) if cuda else None,
            "spikingjelly": version("spikingjelly"),
            "load_average": " ".join(Path("/proc/loadavg").read_text().split()[:3])
            if Path("/proc/loadavg").exists() else None,
            "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def _figures(figures: dict) -> str:
    def shown(value) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "—" if value is None else str(value)

    return ", ".join(f"{k} {shown(v)}" for k, v in figures.items()) or "—"


def markdown(checks: list[Check], env: dict, scale: Scale, command: str) -> str:
    lines = ["# GPU path of the CIFAR recipe", "",
             f"`{command}` on torch {env['torch']} (CUDA build {env['cuda_build']}), "
             f"spikingjelly {env['spikingjelly']}, device **{env['device']}**"
             + (f" ({env['gpu']})" if env["gpu"] else "")
             + f", load average {env['load_average']}, {env['finished']}.", ""]
    if not env["cuda_available"]:
        lines += ["**No CUDA device was available**: the checks marked *needs CUDA* were not "
                  "run, and no GPU figure below is measured. Run `python "
                  "benchmarks/gpu_check.py` on a CUDA machine to fill them in.", ""]
    lines += [f"Scale: preset `{scale.preset}` on synthetic {scale.dataset}-shaped data "
              f"({scale.images} train + {scale.images} test images), batch {scale.batch_size}, "
              f"{scale.warmup} warm-up step(s); kernel check on a {list(scale.feature_map)} "
              f"feature map (tolerance: <= {SPIKE_TOLERANCE:g} of neurons with another spike "
              f"train, |d| <= {ATOL:g} + {RTOL:g} |reference| elsewhere).", "",
              "| check | needs CUDA | status | figures | note |", "|---|---|---|---|---|"]
    lines += [f"| {c.name} | {'yes' if c.needs_cuda else 'no'} | **{c.status}** | "
              f"{_figures(c.figures)} | {c.note or '—'} |" for c in checks]
    not_run = [c.name for c in checks if c.status == "not run"]
    if not_run:
        lines += ["", "Not run here (they need CUDA): " + "; ".join(not_run) + "."]
    lines += ["", "Samples/s are the student's TSER training steps through `neurokd.distill` "
              "(the teacher's forward on each augmented batch and the data loading included). "
              "`torchrun --nproc_per_node 1 -m neurokd distill` runs as a world of one (neurokd "
              "joins a process group only for two or more processes), so the worker check is "
              "what exercises the collective backend on one device."]
    if not env["cuda_available"]:
        lines += ["", "The figures above come from the CPU at the tiny scale: they show that the "
                  "code path runs, not how fast a GPU is."]
    return "\n".join(lines) + "\n"


def run_checks(scale: Scale, device: str) -> list[Check]:
    with tempfile.TemporaryDirectory(prefix="neurokd-gpu-check-") as tmp:
        folder = Path(tmp)
        data_dir = write_synthetic_cifar(folder / "data", scale.dataset, scale.images)
        checks = check_training(scale, data_dir, folder / "runs", device)
        teacher = folder / "runs" / "amp-False" / "teacher.pt"
        checks += check_kernels(scale.feature_map, device, folder, Check)
        checks += check_torchrun(scale, data_dir, folder / "runs", device,
                                 str(teacher) if teacher.exists() else None)
    return checks


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"),
                        default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="a few images (the CPU test)")
    parser.add_argument("--out", type=Path, default=None,
                        help="markdown report (a .json beside it; default: gpu.md in the "
                        "results folder)")
    results_dir.add_options(parser)
    parser.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.ddp_worker:
        ddp_worker(args.device, args.tiny)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: PyTorch sees no CUDA device here")
    args.out = args.out or results_dir.folder(args) / "gpu.md"
    if not args.out.parent.is_dir():
        raise SystemExit(f"--out {args.out}: no folder {args.out.parent}")
    scale = TINY if args.tiny else FULL
    checks = run_checks(scale, args.device)
    env = environment(args.device)
    command = "python benchmarks/gpu_check.py " + " ".join(sys.argv[1:])
    from neurokd.files.safe_io import write_json, write_text

    write_text(args.out, markdown(checks, env, scale, command))
    write_json(args.out.with_suffix(".json"), {"environment": env, "scale": asdict(scale),
                                               "checks": [asdict(c) for c in checks]})
    for check in checks:
        print(f"{check.status:>8}  {check.name}" + (f"  ({check.note})" if check.note else ""))
    print(f"wrote {args.out}")
    return 1 if any(c.status == "failed" for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
