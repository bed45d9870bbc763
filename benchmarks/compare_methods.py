"""Does TSER beat KD beat CE? One teacher, the same student trained with each method over seeds.

    python benchmarks/compare_methods.py                      # mnist1d, 5 seeds, every group
    python benchmarks/compare_methods.py --methods fitnet,bkd,tser+fitnet   # add rows only
    python benchmarks/compare_methods.py --methods ce,kd,tser,fitnet --as-group features
    python benchmarks/compare_methods.py --dataset digits --seeds 3 --groups methods
    python benchmarks/compare_methods.py --dataset cifar10 --data-dir ~/data --student resnet
    python benchmarks/compare_methods.py --setting informed --seeds 10 \
        --methods ce,kd,tser,fitnet,tser+fitnet          # augmented teacher, low-data student

Method groups come from the loss registry (each LossSpec's `group`): `methods` (ce, kd, tser),
`ablation` (temporal separation on CE only, KL only, both; beside them tser as `ts-both+er`),
`features` (each feature loss alone and after each teacher-using loss of `methods`: fitnet, bkd,
kd+fitnet, tser+fitnet, ...). The sweeps vary one setting over the `methods` losses that read
it: `lam` (entropy weight), `tau` (temperature; values from `--taus`), `timesteps` (T = 1, 2,
4, 8 for the losses with a teacher, with firing rates); `variants` runs tser at each τ > 1 of
`--taus` with the CE term at τ (`--ce-tau τ`) and with the entropy at 1 (`--entropy-tau 1`).
`--methods` names single method rows instead (any `neurokd distill --method`); without
`--groups` it runs only those.

A `--setting` (SETTINGS) fixes what teacher and student see: `memorised` (the teacher trains
on the students' whole clean training split and memorises it) or `informed` (the teacher
trains with `--augment`, each student on a stratified 25% share of the split, for as many
steps as a memorised-setting student). Its rows go to their own results file and run folder,
`<dataset><suffix>`.
Writes <dataset><suffix>.md, .json and .png into benchmarks/runs/results/ (`--publish`: the
committed benchmarks/results/, `--results DIR`: elsewhere). The rows of an invocation are merged
into the results file already there (same settings, seeds and teacher, else it stops), so groups
and methods can be added later without retraining what is recorded; the .md lists which command
produced which rows. Runs live in benchmarks/runs/<dataset>/ and a finished run (its
metrics.json exists) is never trained again, so an interrupted benchmark resumes where it
stopped. The grid of distinct runs is one Optuna study (`run_grid`: each run an enqueued trial,
storage `--storage`, default sqlite:///WORKDIR/DATASET/study.db), so two invocations of the
same command, side by side or on two machines sharing a storage, split it without training a
run twice, and a run whose invocation died is taken over once its heartbeat stops. Defaults are chosen on the validation split, never on test.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import results_dir  # noqa: E402
import torch  # noqa: E402
from bench_merge import load_previous, merge  # noqa: E402
from bench_report import write_outputs  # noqa: E402

from neurokd.config import RunConfig  # noqa: E402
from neurokd.losses import (  # noqa: E402
    LOSS_SPECS,
    MethodParts,
    method_group,
    method_names,
    method_params,
)
from neurokd.train.distillation import distill, train_teacher  # noqa: E402

HERE = Path(__file__).parent
LAMS = (0.0, 0.01, 0.05, 0.1, 0.2)
TAUS = (1.0, 2.0, 4.0, 6.0)
STEPS = (1, 2, 4, 8)
MAIN_GROUP = "methods"  # the sweeps and the hybrids draw on its losses
# the rate term is no method of its own (--rate-target adds it to any): no group of rows
METHOD_GROUPS = tuple(dict.fromkeys(spec.group for spec in LOSS_SPECS.values()
                                    if spec.kind != "rate"))
GROUPS = (*METHOD_GROUPS, "lam", "tau", "timesteps", "variants")
# The full loss beside its ablations, under the label the recorded results use.
ABLATION_REFERENCE = {"ts-both+er": "tser"}
# Always in a run key, under the short names of the recorded run folders. Any other
# hyper-parameter a method reads appears only off its default, so keys recorded before that
# parameter existed still name the same runs.
KEY_NAMES = {"alpha": "a", "tau": "tau", "lam": "lam", "feature_weight": "fw"}
DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunConfig)}
FINISHED: dict[str, dict] = {}  # run key -> metrics, each distinct run once


@dataclass(frozen=True)
class Setting:
    """What the teacher and the students of a benchmark see."""

    summary: str
    teacher: dict  # RunConfig values for the teacher's training only
    student: dict  # RunConfig values for every student run
    suffix: str    # of the results file and the run folder: <dataset><suffix>
    epochs: int = 40  # student epochs unless --epochs says otherwise


SETTINGS = {
    "memorised": Setting(
        "the teacher trains on the students' whole training split, clean, and memorises it "
        "(mnist1d: p(label) ≈ 0.999 on it)", {}, {}, ""),
    "informed": Setting(
        "the teacher trains on the whole training split with --augment (mnist1d: its "
        "generator's shift, scale and noise); each student trains clean on a stratified 25% "
        "share of it (--train-fraction 0.25, drawn with the run's seed) for 4 x the epochs, "
        "i.e. as many steps as a memorised-setting student",
        {"augment": True}, {"train_fraction": 0.25}, "-informed", epochs=160),
}


def group_methods(group: str) -> list[str]:
    """The methods of a registry group; a group of feature losses also gets each one after
    every teacher-using loss of the main group (the hybrids)."""
    names = [name for name, spec in LOSS_SPECS.items() if spec.group == group]
    if names and all(LOSS_SPECS[name].kind == "feature" for name in names):
        logits = [m for m in group_methods(MAIN_GROUP) if LOSS_SPECS[m].needs_teacher]
        names += [MethodParts(logit, (name,)).name for name in names for logit in logits]
    return names


def _sweep(methods: list[str], setting: str, values: tuple, label: str) -> dict:
    prefix = len(methods) > 1  # a single swept method needs no name in its labels
    return {f"{m + ' ' if prefix else ''}{label}={v:g}": (m, {setting: v})
            for m in methods for v in values}


def rows_of(group: str, base: dict, taus: tuple = TAUS) -> dict[str, tuple[str, dict]]:
    """Row label -> (method, overrides) for one group."""
    if group in METHOD_GROUPS:
        rows = {m: (m, {}) for m in group_methods(group)}
        if group == "ablation":
            rows.update({label: (m, {}) for label, m in ABLATION_REFERENCE.items()})
        return rows
    main = group_methods(MAIN_GROUP)
    if group in ("lam", "tau"):
        readers = [m for m in main if group in method_params(m)]
        return _sweep(readers, group, LAMS if group == "lam" else taus, group)
    if group == "variants":  # the temperatures the public re-implementations differ on
        return {f"tser tau={t:g} {name}={v:g}": ("tser", {"tau": t, name: v})
                for t in taus if t != 1 for name, v in (("ce_tau", t), ("entropy_tau", 1.0))}
    if group == "timesteps":
        return _sweep([m for m in main if LOSS_SPECS[m].needs_teacher], "timesteps", STEPS, "T")
    raise SystemExit(f"unknown group {group!r}")


def run_key(method: str, settings: dict, seed: int) -> str:
    """Identical effective settings share one run across groups (e.g. tser in every sweep):
    the key holds T and the hyper-parameters the method reads (its LossSpecs' params)."""
    parts = [method.replace("+", "-"), f"T{settings['timesteps']}"]
    for param in method_params(method):
        value = settings.get(param, DEFAULTS[param])
        if param in KEY_NAMES:
            parts.append(f"{KEY_NAMES[param]}{value:g}")
        elif value != DEFAULTS[param]:
            parts.append(f"{param}{value:g}")
    return "_".join(parts) + f"_s{seed}"


def run_one(base: dict, method: str, overrides: dict, seed: int, teacher: Path,
            workdir: Path) -> dict:
    """One run of the grid (one trial of the study, see :func:`run_grid`); a finished run
    (its metrics.json exists) is read, never trained again."""
    settings = {**base, **overrides}
    key = run_key(method, settings, seed)
    metrics_path = workdir / key / "metrics.json"
    if metrics_path.exists():
        FINISHED[key] = json.loads(metrics_path.read_text())
        return FINISHED[key]
    config = RunConfig(**{k: v for k, v in settings.items()
                          if k in RunConfig.__dataclass_fields__},
                       method=method, seed=seed, teacher=str(teacher), out=str(workdir),
                       name=key)
    started = time.perf_counter()
    # A run stopped by Ctrl-C, or whose worker died (its trial comes back to the next worker
    # once the heartbeat stops), continues from its saved state; leftovers of one killed
    # before its first epoch are replaced.
    resume = (workdir / key / "last.pt").exists()
    metrics = FINISHED[key] = distill(config, resume=resume, overwrite=not resume).metrics
    print(f"  {key}: test {100 * metrics['student_accuracy']:.2f}%  "
          f"val {100 * metrics['student_val_accuracy']:.2f}%  "
          f"({time.perf_counter() - started:.0f} s)", flush=True)
    return metrics


def run_grid(plan: dict, base: dict, seeds: list[int], teacher: Path, workdir: Path,
             stem: str, storage: str | None, heartbeat_s: int) -> None:
    """Every distinct run of ``plan`` x ``seeds`` as one Optuna study: each run key is an
    enqueued trial, so invocations of the same command (here, or on other machines with a
    shared ``--storage``) split the grid, a run is trained once, and a dead invocation's run
    is taken over once its heartbeat stops (neurokd.train.sweep.work_through)."""
    import hashlib

    import optuna

    from neurokd.train.sweep import open_study, work_through

    jobs: dict[str, tuple[str, dict, int]] = {}
    for rows in plan.values():
        for method, overrides in rows.values():
            for seed in seeds:
                jobs.setdefault(run_key(method, {**base, **overrides}, seed),
                                (method, overrides, seed))
    keys = sorted(jobs)
    # the same command gives the same grid, hence the same study; another grid gets its own
    # (its runs already finished are still read, not trained again)
    name = f"{stem}-{hashlib.sha1(','.join(keys).encode()).hexdigest()[:12]}"
    workdir.mkdir(parents=True, exist_ok=True)
    study = open_study(storage or f"sqlite:///{workdir / 'study.db'}", name, ["maximize"],
                       optuna.samplers.RandomSampler(seed=0), heartbeat_s)
    for key in keys:  # a second invocation's enqueue of the same run is skipped
        study.enqueue_trial({"run": key}, skip_if_exists=True)

    def objective(trial) -> float:
        key = trial.suggest_categorical("run", keys)
        trial.set_user_attr("pid", os.getpid())
        return run_one(base, *jobs[key][:2], jobs[key][2], teacher, workdir)["student_accuracy"]

    work_through(study, len(keys), objective, heartbeat_s, label=f"grid {name}")
    for key in keys:  # the runs other invocations trained
        if key not in FINISHED:
            FINISHED[key] = json.loads((workdir / key / "metrics.json").read_text())


def method_rows(names: list[str], as_group: str | None) -> dict[str, dict[str, tuple[str, dict]]]:
    """`--methods` as rows of the group each method belongs to (its LossSpec group),
    or all of them in `as_group`."""
    plan: dict[str, dict[str, tuple[str, dict]]] = {}
    for name in names:
        if name not in method_names():
            raise SystemExit(f"unknown method {name!r}; choose from {', '.join(method_names())}")
        group = as_group or method_group(name)
        plan.setdefault(group, {})[name] = (name, {})
    return plan


def summarise(runs: list[dict], keys: list[str]) -> dict:
    """Mean ± std of one row, keeping every seed's figures (in seed order) for later merges."""
    test = [r["student_accuracy"] for r in runs]
    val = [r["student_val_accuracy"] for r in runs]
    return {"mean": statistics.fmean(test), "std": statistics.stdev(test) if len(test) > 1 else 0.0,
            "runs": test, "val_mean": statistics.fmean(val), "val_runs": val,
            "firing_rate": statistics.fmean(r["firing_rate"] for r in runs),
            "firing_rates": [r["firing_rate"] for r in runs],
            "best_epochs": [r["best_epoch"] for r in runs],
            "train_s": [r["wall_time_s"] for r in runs], "run_keys": keys}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Compare ce / kd / tser with seeds and ablations")
    parser.add_argument("--dataset", default="mnist1d")
    parser.add_argument("--setting", choices=tuple(SETTINGS), default="memorised",
                        help="; ".join(f"{name}: {s.summary}" for name, s in SETTINGS.items()))
    parser.add_argument("--data-dir")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--groups", help="comma list (default: all groups, or none when "
                        "--methods is given): " + ",".join(GROUPS))
    parser.add_argument("--methods", help="comma list of method rows, e.g. "
                        "ce,kd,tser,fitnet,bkd,tser+fitnet")
    parser.add_argument("--as-group", choices=GROUPS, help="put the --methods rows in this "
                        "group (e.g. features, to rerun ce/kd/tser beside the feature methods)")
    parser.add_argument("--fresh", action="store_true",
                        help="replace the results file instead of merging into it")
    parser.add_argument("--epochs", type=int, help="student epochs (default: the setting's, "
                        + ", ".join(f"{s.epochs} {name}" for name, s in SETTINGS.items()) + ")")
    parser.add_argument("--taus", default=",".join(f"{t:g}" for t in TAUS),
                        help="temperatures of the tau sweep and the variants (comma list)")
    parser.add_argument("--teacher-epochs", type=int, default=60)
    parser.add_argument("--student", default="cnn")
    parser.add_argument("--teacher-arch", default="cnn")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--tau", type=float, default=1.0)
    parser.add_argument("--lam", type=float, default=0.05)
    parser.add_argument("--timesteps", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workdir", default=str(HERE / "runs"))
    parser.add_argument("--storage", help="Optuna storage URL of the grid's study, shared by "
                        "every invocation (default: sqlite:///WORKDIR/DATASET/study.db)")
    parser.add_argument("--heartbeat", type=int, default=10,
                        help="seconds between a running run's heartbeats; one silent for 3x "
                        "this is taken over by another invocation")
    results_dir.add_options(parser)
    return parser.parse_args()


def plan_rows(args: argparse.Namespace, base: dict) -> dict[str, dict[str, tuple[str, dict]]]:
    names = [m.strip() for m in (args.methods or "").split(",") if m.strip()]
    default_groups = "" if names else ",".join(GROUPS)
    groups = [g.strip() for g in (args.groups or default_groups).split(",") if g.strip()]
    taus = tuple(float(t) for t in args.taus.split(",") if t.strip())
    plan = {group: rows_of(group, base, taus) for group in groups}
    for group, rows in method_rows(names, args.as_group).items():
        plan[group] = {**plan.get(group, {}), **rows}
    if not plan:
        raise SystemExit("nothing to run: give --groups and/or --methods")
    return plan


def main() -> None:
    args = parse_args()
    started, code = time.perf_counter(), code_version()
    setting = SETTINGS[args.setting]
    base = {"dataset": args.dataset, "data_dir": args.data_dir,
            "epochs": args.epochs or setting.epochs,
            "teacher_epochs": args.teacher_epochs, "student": args.student,
            "teacher_arch": args.teacher_arch, "alpha": args.alpha, "tau": args.tau,
            "lam": args.lam, "timesteps": args.timesteps, "lr": args.lr,
            "batch_size": args.batch_size, "device": "auto", **setting.student,
            **{f"teacher_{k}": v for k, v in setting.teacher.items()}}
    seeds = list(range(args.seeds))
    plan = plan_rows(args, base)
    stem = args.dataset + setting.suffix
    results_json = results_dir.folder(args) / f"{stem}.json"
    previous = None if args.fresh else load_previous(results_json, base, seeds)
    workdir = Path(args.workdir) / stem
    teacher = workdir / "teacher" / "teacher.pt"
    if not teacher.exists():
        print(f"training the {args.teacher_arch} teacher on {args.dataset}", flush=True)
        teacher_config = {k: v for k, v in {**base, **setting.teacher}.items()
                          if k in RunConfig.__dataclass_fields__}
        train_teacher(RunConfig(**teacher_config, out=str(workdir), name="teacher"))
    teacher_accuracy = json_teacher_accuracy(teacher)
    print(f"teacher test accuracy {100 * teacher_accuracy:.2f}%", flush=True)
    if previous is not None and previous["teacher_accuracy"] != teacher_accuracy:
        # Checked before any student trains: rows from another teacher are not comparable.
        raise SystemExit(f"teacher scores {teacher_accuracy}, the rows in {results_json} used "
                         f"one scoring {previous['teacher_accuracy']}; use --fresh or another "
                         "--results folder")

    run_grid(plan, base, seeds, teacher, workdir, stem, args.storage, args.heartbeat)
    table: dict[str, dict] = {}
    for group, rows in plan.items():
        table[group] = {}
        for label, (method, overrides) in rows.items():
            keys = [run_key(method, {**base, **overrides}, s) for s in seeds]
            table[group][label] = summarise([FINISHED[k] for k in keys], keys)

    used = {key for rows in table.values() for row in rows.values() for key in row["run_keys"]}
    invocation = {
        "command": "python benchmarks/compare_methods.py " + " ".join(sys.argv[1:]),
        "rows": [f"{group}/{label}" for group, rows in table.items() for label in rows],
        "distinct_runs": len(used),
        "training_time_s": round(sum(FINISHED[k]["wall_time_s"] for k in used), 1),
        "wall_time_s": round(time.perf_counter() - started, 1),
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "code": code, "threads": torch.get_num_threads(),
    }
    # Read again: another invocation may have merged its rows while this one trained.
    previous = None if args.fresh else load_previous(results_json, base, seeds)
    result = merge(previous, table, invocation, base, seeds, teacher_accuracy)
    result["setting"] = {"name": args.setting, "summary": setting.summary}
    result["teacher_fit"] = teacher_fit(teacher, args.dataset, args.data_dir)
    paths = write_outputs(result, results_dir.folder(args), stem)
    print("wrote " + ", ".join(str(p) for p in paths))


def code_version() -> str:
    """The commit the training code came from (+ a note if its tracked Python files differed):
    the data order, and hence each seed's result, depend on the training code. Taken when the
    invocation starts, which is when the code is imported."""
    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=HERE.parent, capture_output=True,
                              text=True).stdout

    commit = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    changed = git("status", "--porcelain", "--untracked-files=no", "--", "neurokd",
                  "benchmarks/*.py").strip()
    return commit + (" + uncommitted changes" if changed else "")


def json_teacher_accuracy(teacher: Path) -> float:
    from neurokd.student.checkpoint import TEACHER_FORMAT, load_checkpoint

    return float(load_checkpoint(teacher, formats=(TEACHER_FORMAT,))["metrics"]["accuracy"])


def teacher_fit(teacher: Path, dataset: str, data_dir: str | None) -> dict:
    """What the teacher's soft targets can tell a student about its training samples (clean,
    the whole training split): its accuracy there and its mean probability of the label at
    τ = 1 (near 1: it has memorised them, and KD's target is the one-hot label)."""
    from neurokd.data import load_run_data, make_loader
    from neurokd.models import build_teacher
    from neurokd.student.checkpoint import TEACHER_FORMAT, load_checkpoint
    from neurokd.train.evaluation import predict

    stored = load_checkpoint(teacher, formats=(TEACHER_FORMAT,))
    # The teacher's own data settings (event frames need its T), clean: no augmentation.
    samples = load_run_data({**stored["config"], "dataset": dataset, "data_dir": data_dir,
                             "augment": False}).train
    model = build_teacher(stored["config"])
    model.load_state_dict(stored["teacher"])
    model.eval()
    correct, p_label, count = 0, 0.0, 0
    with torch.inference_mode():
        for x, y in make_loader(samples, 512):
            p = torch.softmax(predict(model, x), -1)
            correct += int((p.argmax(-1) == y).sum())
            p_label += float(p[torch.arange(len(y)), y].sum())
            count += len(y)
    return {"train_accuracy": correct / count, "train_p_label": p_label / count}


if __name__ == "__main__":
    main()
