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
