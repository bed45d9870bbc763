"""The method benchmark's results merging: new rows join the recorded ones only when they are
comparable, derived figures follow the merged rows, and --methods plans only what it names."""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_merge  # noqa: E402
import compare_methods  # noqa: E402
from bench_report import markdown  # noqa: E402

BASE = {"dataset": "mnist1d", "data_dir": None, "epochs": 40, "teacher_epochs": 60,
        "student": "cnn", "teacher_arch": "cnn", "alpha": 0.5, "tau": 1.0, "lam": 0.05,
        "timesteps": 4, "lr": 2e-3, "batch_size": 64, "device": "auto"}
SEEDS = [0, 1, 2]


def _row(test: list[float]) -> dict:
    return {"mean": statistics.fmean(test), "std": statistics.stdev(test), "runs": test,
            "val_mean": statistics.fmean(test), "val_runs": test, "firing_rate": 0.1}


def _invocation(command: str, rows: list[str]) -> dict:
    return {"command": command, "rows": rows, "distinct_runs": len(rows) * len(SEEDS),
            "training_time_s": 60.0, "wall_time_s": 61.0, "code": "abc1234", "threads": 1}


def _first(tmp_path: Path) -> Path:
    table = {"methods": {"ce": _row([0.90, 0.91, 0.92]), "kd": _row([0.90, 0.92, 0.91]),
                         "tser": _row([0.93, 0.93, 0.95])}}
    result = bench_merge.merge(None, table, _invocation("first", ["methods/ce"]), BASE, SEEDS,
                               0.97)
    path = tmp_path / "mnist1d.json"
    path.write_text(json.dumps(result))
    return path


def test_rows_are_added_without_touching_recorded_ones(tmp_path):
    path = _first(tmp_path)
    recorded = json.loads(path.read_text())
    previous = bench_merge.load_previous(path, BASE, SEEDS)
    merged = bench_merge.merge(previous, {"features": {"fitnet": _row([0.94, 0.92, 0.96])}},
                               _invocation("second", ["features/fitnet"]), BASE, SEEDS, 0.97)
    assert merged["methods"] == recorded["methods"]
    assert list(merged)[:6] == ["dataset", "seeds", "teacher_accuracy", "methods", "settings",
                                "significance"]
    assert [i["command"] for i in merged["invocations"]] == ["first", "second"]
    assert merged["settings"]["groups"] == ["methods", "features"]
    ce = recorded["methods"]["ce"]["mean"]
    assert merged["features"]["fitnet"]["gap_closed"] == pytest.approx((0.94 - ce) / (0.97 - ce))
    test = merged["significance"]["features/fitnet_vs_tser"]
    diffs = [0.94 - 0.93, 0.92 - 0.93, 0.96 - 0.95]
    t = statistics.fmean(diffs) / (statistics.stdev(diffs) / math.sqrt(len(diffs)))
    assert test["t"] == pytest.approx(t) and test["wins"] == 2 and test["n"] == 3
    text = markdown(merged)
    assert "| 2 | `second` | features: fitnet |" in text and "fitnet vs tser" in text


@pytest.mark.parametrize("change", [{"lam": 0.1}, {"epochs": 30}, {"student": "resnet"}])
def test_other_settings_stop_the_merge(tmp_path, change):
    path = _first(tmp_path)
    with pytest.raises(SystemExit, match=next(iter(change))):
        bench_merge.load_previous(path, {**BASE, **change}, SEEDS)


def test_other_seeds_or_teacher_stop_the_merge(tmp_path):
    path = _first(tmp_path)
    with pytest.raises(SystemExit, match="seeds"):
        bench_merge.load_previous(path, BASE, [0, 1, 2, 3])
    previous = bench_merge.load_previous(path, BASE, SEEDS)
    with pytest.raises(SystemExit, match="not the same teacher"):
        bench_merge.merge(previous, {}, _invocation("x", []), BASE, SEEDS, 0.96)


def test_files_from_before_merging_keep_their_command(tmp_path):
    path = tmp_path / "old.json"
    old = {"dataset": "mnist1d", "seeds": SEEDS, "teacher_accuracy": 0.97, "settings": BASE,
           "methods": {"ce": _row([0.9, 0.91, 0.92])}, "command": "python x.py ",
           "distinct_runs": 3, "training_time_s": 10.0, "wall_time_s": 11.0}
    path.write_text(json.dumps(old))
    previous = bench_merge.load_previous(path, BASE, SEEDS)
    assert previous["invocations"] == [{"command": "python x.py", "rows": ["methods/ce"],
                                        "distinct_runs": 3, "training_time_s": 10.0,
                                        "wall_time_s": 11.0}]
    assert "command" not in previous


def _args(**given) -> argparse.Namespace:
    return argparse.Namespace(**{"methods": None, "groups": None, "as_group": None, **given})


def test_methods_option_plans_only_the_named_rows():
    plan = compare_methods.plan_rows(_args(methods="ce,tser+fitnet,ts-kl"), BASE)
    assert plan == {"methods": {"ce": ("ce", {})}, "features": {"tser+fitnet": ("tser+fitnet", {})},
                    "ablation": {"ts-kl": ("ts-kl", {})}}
    plan = compare_methods.plan_rows(_args(methods="kd,bkd", as_group="features"), BASE)
    assert plan == {"features": {"kd": ("kd", {}), "bkd": ("bkd", {})}}
    assert list(compare_methods.plan_rows(_args(), BASE)) == list(compare_methods.GROUPS)
    with pytest.raises(SystemExit, match="unknown method"):
        compare_methods.plan_rows(_args(methods="kd,nope"), BASE)


def test_groups_and_run_keys_from_the_registry_match_the_recorded_runs():
    """The rows and run folders recorded in benchmarks/results/mnist1d.json (trained before the
    groups came from the registry) are still what the benchmark plans, so nothing retrains."""
    rows = {group: compare_methods.rows_of(group, BASE) for group in compare_methods.GROUPS}
    assert list(rows["methods"]) == ["ce", "kd", "tser"]
    assert list(rows["features"]) == ["fitnet", "bkd", "kd+fitnet", "tser+fitnet", "kd+bkd",
                                      "tser+bkd"]
    assert rows["ablation"] == {"ts-ce": ("ts-ce", {}), "ts-kl": ("ts-kl", {}),
                                "ts-both": ("ts-both", {}), "ts-both+er": ("tser", {})}
    assert list(rows["lam"]) == ["lam=0", "lam=0.01", "lam=0.05", "lam=0.1", "lam=0.2"]
    assert list(rows["tau"])[:5] == ["kd tau=1", "kd tau=2", "kd tau=4", "kd tau=6", "tser tau=1"]
    assert rows["timesteps"]["tser T=8"] == ("tser", {"timesteps": 8})
    recorded = {("ce", None): "ce_T4_s0", ("kd", None): "kd_T4_a0.5_tau1_s0",
                ("tser", None): "tser_T4_a0.5_tau1_lam0.05_s0",
                ("fitnet", None): "fitnet_T4_fw1_s0", ("bkd", None): "bkd_T4_fw1_s0",
                ("tser+bkd", None): "tser-bkd_T4_a0.5_tau1_lam0.05_fw1_s0",
                ("ts-kl", None): "ts-kl_T4_a0.5_tau1_s0",
                ("kd", ("timesteps", 2)): "kd_T2_a0.5_tau1_s0",
                ("tser", ("lam", 0.0)): "tser_T4_a0.5_tau1_lam0_s0"}
    for (method, override), key in recorded.items():
        settings = {**BASE, **dict([override] if override else [])}
        assert compare_methods.run_key(method, settings, 0) == key
    # A hyper-parameter added later shows in the key only off its default.
    assert compare_methods.run_key("tser", {**BASE, "ce_tau": 2.0}, 1) == \
        "tser_T4_a0.5_tau1_ce_tau2_lam0.05_s1"


def test_a_group_outside_the_known_order_is_kept_and_reported(tmp_path):
    previous = bench_merge.load_previous(_first(tmp_path), BASE, SEEDS)
    merged = bench_merge.merge(previous, {"newgroup": {"x": _row([0.9, 0.9, 0.95])}},
                               _invocation("third", ["newgroup/x"]), BASE, SEEDS, 0.97)
    assert merged["settings"]["groups"] == ["methods", "newgroup"]
    assert "newgroup" in merged and "## newgroup" in markdown(merged)
