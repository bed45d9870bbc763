"""Does TSER beat KD beat CE? One teacher, the same student trained with each method over seeds.

    python benchmarks/compare_methods.py                      # mnist1d, 5 seeds, every group
    python benchmarks/compare_methods.py --dataset digits --seeds 3 --groups methods
    python benchmarks/compare_methods.py --dataset cifar10 --data-dir ~/data --student resnet

Groups: `methods` (ce, kd, tser), `features` (fitnet, bkd, kd+fitnet, tser+fitnet),
`ablation` (temporal separation on CE only, KL only, both,
both + entropy), `lam` (entropy weight sweep), `tau` (temperature sweep, kd and tser),
`timesteps` (T = 1, 2, 4, 8 for kd and tser, with firing rates). Writes
benchmarks/results/<dataset>.md, .json and .png. Runs live in benchmarks/runs/<dataset>/ and a
finished run (its metrics.json exists) is never trained again, so an interrupted benchmark
resumes where it stopped. Defaults are chosen on the validation split, never on test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_report import write_outputs  # noqa: E402

from neurokd.config import RunConfig  # noqa: E402
from neurokd.distill import distill, train_teacher  # noqa: E402

HERE = Path(__file__).parent
LAMS = (0.0, 0.01, 0.05, 0.1, 0.2)
TAUS = (1.0, 2.0, 4.0, 6.0)
STEPS = (1, 2, 4, 8)
FINISHED: dict[str, dict] = {}  # run key -> metrics, each distinct run once


def rows_of(group: str, base: dict) -> dict[str, tuple[str, dict]]:
    """Row label -> (method, overrides) for one group."""
    if group == "methods":
        return {m: (m, {}) for m in ("ce", "kd", "tser")}
    if group == "features":
        return {m: (m, {}) for m in ("fitnet", "bkd", "kd+fitnet", "tser+fitnet")}
    if group == "ablation":
        return {"ts-ce": ("ts-ce", {}), "ts-kl": ("ts-kl", {}), "ts-both": ("ts-both", {}),
                "ts-both+er": ("tser", {})}
    if group == "lam":
        return {f"lam={v:g}": ("tser", {"lam": v}) for v in LAMS}
    if group == "tau":
        return {f"{m} tau={v:g}": (m, {"tau": v}) for m in ("kd", "tser") for v in TAUS}
    if group == "timesteps":
        return {f"{m} T={t}": (m, {"timesteps": t}) for m in ("kd", "tser") for t in STEPS}
    raise SystemExit(f"unknown group {group!r}")


def run_key(method: str, settings: dict, seed: int) -> str:
    """Identical effective settings share one run across groups (e.g. tser in every sweep)."""
    logit = method.split("+")[0] if method.split("+")[0] in ("ce", "kd", "tser", "ts-ce",
                                                             "ts-kl", "ts-both") else "ce"
    parts = [method.replace("+", "-"), f"T{settings['timesteps']}"]
    if logit != "ce":
        parts += [f"a{settings['alpha']:g}", f"tau{settings['tau']:g}"]
    if logit == "tser":
        parts.append(f"lam{settings['lam']:g}")
    if logit != method:
        parts.append(f"fw{settings.get('feature_weight', 1.0):g}")
    return "_".join(parts) + f"_s{seed}"


def run_one(base: dict, method: str, overrides: dict, seed: int, teacher: Path,
            workdir: Path) -> dict:
    settings = {**base, **overrides}
    key = run_key(method, settings, seed)
    metrics_path = workdir / key / "metrics.json"
    if metrics_path.exists():  # finished earlier: resume, don't retrain
        FINISHED[key] = json.loads(metrics_path.read_text())
        return FINISHED[key]
    config = RunConfig(**{k: v for k, v in settings.items() if k in RunConfig.__dataclass_fields__},
                       method=method, seed=seed, teacher=str(teacher), out=str(workdir), name=key)
    started = time.perf_counter()
    metrics = FINISHED[key] = distill(config).metrics
    print(f"  {key}: test {100 * metrics['student_accuracy']:.2f}%  "
          f"val {100 * metrics['student_val_accuracy']:.2f}%  "
          f"({time.perf_counter() - started:.0f} s)", flush=True)
    return metrics


def summarise(runs: list[dict], teacher_accuracy: float, ce_mean: float | None) -> dict:
    test = [r["student_accuracy"] for r in runs]
    val = [r["student_val_accuracy"] for r in runs]
    mean = statistics.fmean(test)
    row = {"mean": mean, "std": statistics.stdev(test) if len(test) > 1 else 0.0, "runs": test,
           "val_mean": statistics.fmean(val), "val_runs": val,
           "firing_rate": statistics.fmean(r["firing_rate"] for r in runs)}
    if ce_mean is not None and teacher_accuracy > ce_mean:
        row["gap_closed"] = (mean - ce_mean) / (teacher_accuracy - ce_mean)
    return row


def paired(a: list[float], b: list[float]) -> dict:
    """Paired t-test over seeds (the same seed shares data order and initialisation)."""
    from scipy import stats

    diffs = [x - y for x, y in zip(a, b, strict=True)]
    result = {"mean_diff": statistics.fmean(diffs), "wins": sum(d > 0 for d in diffs),
              "n": len(diffs)}
    if len(diffs) > 1 and statistics.pstdev(diffs) > 0:
        test = stats.ttest_rel(a, b)
        result.update(t=float(test.statistic), p=float(test.pvalue))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="Compare ce / kd / tser with seeds and ablations")
    parser.add_argument("--dataset", default="mnist1d")
    parser.add_argument("--data-dir")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--groups", default="methods,features,ablation,lam,tau,timesteps")
    parser.add_argument("--epochs", type=int, default=40)
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
    parser.add_argument("--results", default=str(HERE / "results"))
    args = parser.parse_args()

    started = time.perf_counter()
    base = {"dataset": args.dataset, "data_dir": args.data_dir, "epochs": args.epochs,
            "teacher_epochs": args.teacher_epochs, "student": args.student,
            "teacher_arch": args.teacher_arch, "alpha": args.alpha, "tau": args.tau,
            "lam": args.lam, "timesteps": args.timesteps, "lr": args.lr,
            "batch_size": args.batch_size, "device": "auto"}
    workdir = Path(args.workdir) / args.dataset
    teacher = workdir / "teacher" / "teacher.pt"
    if not teacher.exists():
        print(f"training the {args.teacher_arch} teacher on {args.dataset}", flush=True)
        teacher_config = {k: v for k, v in base.items() if k in RunConfig.__dataclass_fields__}
        train_teacher(RunConfig(**teacher_config, out=str(workdir), name="teacher"))
    teacher_accuracy = json_teacher_accuracy(teacher)

    seeds = list(range(args.seeds))
    groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    table: dict[str, dict] = {}
    raw: dict[str, list[dict]] = {}
    for group in ["methods"] + [g for g in groups if g != "methods"]:
        print(f"group {group}", flush=True)
        table[group] = {}
        for label, (method, overrides) in rows_of(group, base).items():
            runs = [run_one(base, method, overrides, s, teacher, workdir) for s in seeds]
            raw[f"{group}/{label}"] = runs
            ce_mean = table["methods"]["ce"]["mean"] if "ce" in table.get("methods", {}) else None
            table[group][label] = summarise(runs, teacher_accuracy, ce_mean)

    methods = table["methods"]
    significance = {
        "tser_vs_kd": paired(methods["tser"]["runs"], methods["kd"]["runs"]),
        "kd_vs_ce": paired(methods["kd"]["runs"], methods["ce"]["runs"]),
        "tser_vs_ce": paired(methods["tser"]["runs"], methods["ce"]["runs"]),
    }
    result = {
        "dataset": args.dataset, "seeds": seeds, "teacher_accuracy": teacher_accuracy,
        "methods": methods, "settings": {**base, "seeds": args.seeds, "groups": groups},
        "significance": significance,
        **{group: rows for group, rows in table.items() if group != "methods"},
        "wall_time_s": round(time.perf_counter() - started, 1),
        "distinct_runs": len(FINISHED),
        "training_time_s": round(sum(m["wall_time_s"] for m in FINISHED.values()), 1),
        "command": "python benchmarks/compare_methods.py " + " ".join(sys.argv[1:]),
    }
    paths = write_outputs(result, Path(args.results))
    print("wrote " + ", ".join(str(p) for p in paths))


def json_teacher_accuracy(teacher: Path) -> float:
    from neurokd.checkpoint import TEACHER_FORMAT, load_checkpoint

    return float(load_checkpoint(teacher, formats=(TEACHER_FORMAT,))["metrics"]["accuracy"])


if __name__ == "__main__":
    main()
