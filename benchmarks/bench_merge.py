"""Merging a benchmark invocation's rows into the results file already on disk.

A later invocation (e.g. `--methods fitnet,bkd`) adds its rows to `<dataset>.json` without
retraining what is recorded there. Rows are only comparable when the settings, the seeds and
the teacher are the same, so a mismatch stops the merge instead of mixing experiments. Derived
figures (gap closed, paired tests) are recomputed from the merged rows.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

# The order of the groups in the results file; a group not listed (a new LossSpec group)
# follows them, in the order it first appeared.
GROUP_ORDER = ("methods", "features", "ablation", "lam", "tau", "variants", "timesteps")
# Settings that change what a row means; a merge across different values would mix experiments.
# (train_fraction and teacher_augment exist only in files of the settings that set them.)
COMPARED = ("dataset", "epochs", "teacher_epochs", "student", "teacher_arch", "alpha", "tau",
            "lam", "timesteps", "lr", "batch_size", "train_fraction", "teacher_augment")


def load_previous(path: Path, base: dict, seeds: list[int]) -> dict | None:
    """The results already at ``path`` if they can take new rows; SystemExit if they cannot."""
    if not path.exists():
        return None
    previous = json.loads(path.read_text())
    differing = [k for k in COMPARED if previous["settings"].get(k) != base.get(k)]
    if differing:
        raise SystemExit(
            f"{path} was made with other settings ({', '.join(differing)}: "
            + ", ".join(f"{previous['settings'].get(k)!r} there, {base.get(k)!r} now"
                        for k in differing)
            + "); pass the same settings, another --results folder, or --fresh to replace it")
    if previous["seeds"] != seeds:
        raise SystemExit(f"{path} holds seeds {previous['seeds']}, this run uses {seeds}; "
                         "rows over different seeds cannot be paired")
    return _with_invocations(previous)


def _with_invocations(previous: dict) -> dict:
    """Files written before merging existed record one command at the top level."""
    if "invocations" in previous:
        return previous
    rows = [f"{g}/{label}" for g in GROUP_ORDER for label in previous.get(g, {})]
    previous["invocations"] = [{
        "command": previous.pop("command").strip(), "rows": rows,
        "distinct_runs": previous.pop("distinct_runs"),
        "training_time_s": previous.pop("training_time_s"),
        "wall_time_s": previous.pop("wall_time_s")}]
    return previous


def merge(previous: dict | None, table: dict[str, dict], invocation: dict, base: dict,
          seeds: list[int], teacher_accuracy: float) -> dict:
    """``previous`` (or nothing) plus this invocation's rows; a row run again replaces the old."""
    if previous is not None and previous["teacher_accuracy"] != teacher_accuracy:
        raise SystemExit(f"the teacher scores {teacher_accuracy} but the recorded rows used one "
                         f"scoring {previous['teacher_accuracy']}: not the same teacher")
    result = previous or {"dataset": base["dataset"], "seeds": seeds,
                          "teacher_accuracy": teacher_accuracy, "invocations": []}
    recorded = result.get("settings", {}).get("groups", [])
    for group, rows in table.items():
        result[group] = {**result.get(group, {}), **rows}
    others = [g for g in dict.fromkeys([*recorded, *table]) if g not in GROUP_ORDER]
    groups = [g for g in (*GROUP_ORDER, *others) if result.get(g)]
    result["settings"] = {**base, "seeds": len(seeds), "groups": groups}
    result["invocations"] = result["invocations"] + [invocation]
    _derive(result)
    # Stable key order: the schema first, then the other groups, then bookkeeping.
    head = ("dataset", "setting", "seeds", "teacher_accuracy", "teacher_fit", "methods",
            "settings", "significance")
    order = [*head, *[g for g in groups if g != "methods"], "invocations"]
    return {k: result[k] for k in order if k in result}


def _derive(result: dict) -> None:
    ce = result.get("methods", {}).get("ce")
    teacher = result["teacher_accuracy"]
    for group in result["settings"]["groups"]:
        for row in result.get(group, {}).values():
            row.pop("gap_closed", None)
            if ce is not None and teacher > ce["mean"]:
                row["gap_closed"] = (row["mean"] - ce["mean"]) / (teacher - ce["mean"])
    result["significance"] = significance(result)


def significance(result: dict) -> dict[str, dict]:
    """Paired tests between rows trained by the same invocation code over the same seeds: the
    methods group, and the features group against its own tser (or the methods' one)."""
    methods, features = result.get("methods", {}), result.get("features", {})
    tests = {f"{a}_vs_{b}": paired(methods[a]["runs"], methods[b]["runs"])
             for a, b in (("tser", "kd"), ("kd", "ce"), ("tser", "ce"))
             if a in methods and b in methods}
    reference = features.get("tser") or methods.get("tser")
    where = "features/" if "tser" in features else ""
    for a, b in (("tser", "kd"), ("kd", "ce"), ("tser", "ce")):
        if a in features and b in features:
            tests[f"features/{a}_vs_features/{b}"] = paired(features[a]["runs"], features[b]["runs"])
    for a, b in (("tser", "kd"), ("kd", "ce"), ("tser", "ce")):
        if all(k in methods and k in features for k in (a, b)):  # two samples of seed pairs
            tests[f"{a}_vs_{b} (both groups pooled)"] = paired(
                methods[a]["runs"] + features[a]["runs"], methods[b]["runs"] + features[b]["runs"])
    for name, row in features.items():
        if name not in ("ce", "kd", "tser") and reference is not None:
            tests[f"features/{name}_vs_{where}tser"] = paired(row["runs"], reference["runs"])
    return {**tests, **_sweep_pairs(result)}


def _sweep_pairs(result: dict) -> dict[str, dict]:
    """tser against kd at each temperature of the tau sweep, and each tser variant against
    tser at its temperature."""
    tau, variants = result.get("tau", {}), result.get("variants", {})
    tests = {}
    for label, row in tau.items():
        kd = "kd " + label.removeprefix("tser ")
        if label.startswith("tser ") and kd in tau:
            tests[f"tau/{label}_vs_tau/{kd}"] = paired(row["runs"], tau[kd]["runs"])
    for label, row in variants.items():
        reference = " ".join(label.split()[:2])  # "tser tau=2 ce_tau=2" -> "tser tau=2"
        if reference in tau:
            tests[f"variants/{label}_vs_tau/{reference}"] = paired(row["runs"],
                                                                  tau[reference]["runs"])
    return tests


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
