"""Any-time students (issue 25): accuracy at every timestep, calibrated early exit and the
energy up to the exit, for ce / kd / tser / ts-both over seeds.

    python benchmarks/anytime.py --threads 1                         # digits, 10 seeds
    python benchmarks/anytime.py --threads 1 --train-only &   # a second trainer beside it
    python benchmarks/anytime.py --dataset mnist1d --setting informed --threads 1
    python benchmarks/anytime.py --dataset digits-dvs --threads 1 --publish

The grid is compare_methods.py's (its run keys, teacher, settings and ``run_grid``: one Optuna
study, so two invocations side by side split the runs and a finished run is never trained
again; the second should start once the first has trained the teacher), in its own
folder benchmarks/runs/anytime/<dataset><suffix>/ because every run here also calibrates an
exit (`--exit-rule`, `--exit-drop`, recorded in its metrics.json). Per method it reports

* the test accuracy of the prefix prediction at t = 1..T (mean ± std over seeds) and the paired
  differences tser − kd at every t (paired t-test and Wilcoxon signed-rank, scipy.stats);
* the calibrated exit (threshold chosen on validation, never on test): its test accuracy and
  mean timesteps, and the oracle bound;
* energy per inference with the exit and at full T (`neurokd.energy.estimate` with ``exit=``,
  compute model) under the loihi and 45nm-fp32 profiles, and their ratio;
* the figures of issue 25: an evaluation with an exit rule vs a plain evaluation pass, the
  stepwise ONNX stepped T times at batch 1 vs the unrolled ONNX, and tser's mean timesteps and
  energy ratio on digits — each met or missed.

Writes anytime-<dataset><suffix>.md/.json into benchmarks/runs/results/ (``--publish``: the
committed benchmarks/results/).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import results_dir  # noqa: E402
import torch  # noqa: E402
from compare_methods import (  # noqa: E402
    SETTINGS,
    code_version,
    json_teacher_accuracy,
    run_grid,
    run_key,
)

from neurokd.config import RunConfig  # noqa: E402
from neurokd.train.distillation import train_teacher  # noqa: E402

HERE = Path(__file__).parent
METHODS = ("ce", "kd", "tser", "ts-both")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--setting", choices=tuple(SETTINGS), default="memorised")
    parser.add_argument("--data-dir")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--epochs", type=int, help="student epochs (default: the setting's)")
    parser.add_argument("--teacher-epochs", type=int, default=60)
    parser.add_argument("--timesteps", type=int, default=4)
    parser.add_argument("--exit-rule", default="confidence")
    parser.add_argument("--exit-drop", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per process (1: two processes side by side)")
    parser.add_argument("--train-only", action="store_true",
                        help="train the grid and stop (a second trainer beside the main one)")
    parser.add_argument("--storage", help="Optuna storage URL of the grid's study (default: "
                        "sqlite in the run folder), as compare_methods.py")
    parser.add_argument("--heartbeat", type=int, default=10,
                        help="seconds between a running run's heartbeats (compare_methods.py)")
    parser.add_argument("--energy-samples", type=int, default=None,
                        help="test samples the energy is counted on (default: all)")
    parser.add_argument("--workdir", default=str(HERE / "runs" / "anytime"))
    results_dir.add_options(parser)
    return parser.parse_args()


def base_settings(args: argparse.Namespace) -> dict:
    setting = SETTINGS[args.setting]
    return {"dataset": args.dataset, "data_dir": args.data_dir,
            "epochs": args.epochs or setting.epochs, "teacher_epochs": args.teacher_epochs,
            "student": "cnn", "teacher_arch": "cnn", "alpha": 0.5, "tau": 1.0, "lam": 0.05,
            "timesteps": args.timesteps, "lr": 2e-3, "batch_size": 64, "device": "cpu",
            "threads": args.threads, "exit_rule": args.exit_rule, "exit_drop": args.exit_drop,
            **setting.student, **{f"teacher_{k}": v for k, v in setting.teacher.items()}}


def train_grid(args: argparse.Namespace, base: dict, workdir: Path) -> dict[str, list[Path]]:
    """method -> run folders (seed order), training what is missing."""
    teacher = workdir / "teacher" / "teacher.pt"
    setting = SETTINGS[args.setting]
    if not teacher.exists():
        print(f"training the teacher on {args.dataset}", flush=True)
        config = {k: v for k, v in {**base, **setting.teacher}.items()
                  if k in RunConfig.__dataclass_fields__ and not k.startswith("exit_")}
        train_teacher(RunConfig(**config, out=str(workdir), name="teacher"))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    seeds = list(range(args.seeds))
    # compare_methods' grid: one Optuna study, so invocations side by side split the runs
    plan = {"methods": {method: (method, {}) for method in methods}}
    run_grid(plan, base, seeds, teacher, workdir, workdir.name, args.storage, args.heartbeat)
    return {method: [workdir / run_key(method, base, seed) for seed in seeds]
            for method in methods}


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    started, code = time.perf_counter(), code_version()
    base = base_settings(args)
    stem = args.dataset + SETTINGS[args.setting].suffix
    workdir = Path(args.workdir) / stem
    workdir.mkdir(parents=True, exist_ok=True)
    runs = train_grid(args, base, workdir)
    if args.train_only:
        return
    from anytime_report import analyse, write_outputs

    teacher_accuracy = json_teacher_accuracy(workdir / "teacher" / "teacher.pt")
    result = analyse(args, base, runs, teacher_accuracy)
    result["invocation"] = {
        "command": "python benchmarks/anytime.py " + " ".join(sys.argv[1:]),
        "wall_time_s": round(time.perf_counter() - started, 1), "code": code,
        "threads": args.threads,
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    paths = write_outputs(result, results_dir.folder(args), f"anytime-{stem}")
    print("wrote " + ", ".join(str(p) for p in paths))
    print(json.dumps(result.get("figures", {}), indent=1))


if __name__ == "__main__":
    main()
