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
    return argparse.Namespace(**{"methods": None, "groups": None, "as_group": None,
                                 "taus": "1,2,4,6", **given})


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


def test_variants_and_sweep_pairs_follow_the_taus():
    rows = compare_methods.rows_of("variants", BASE, (1.0, 2.0, 4.0))
    assert rows == {"tser tau=2 ce_tau=2": ("tser", {"tau": 2.0, "ce_tau": 2.0}),
                    "tser tau=2 entropy_tau=1": ("tser", {"tau": 2.0, "entropy_tau": 1.0}),
                    "tser tau=4 ce_tau=4": ("tser", {"tau": 4.0, "ce_tau": 4.0}),
                    "tser tau=4 entropy_tau=1": ("tser", {"tau": 4.0, "entropy_tau": 1.0})}
    assert compare_methods.run_key("tser", {**BASE, "tau": 4.0, "entropy_tau": 1.0}, 3) == \
        "tser_T4_a0.5_tau4_lam0.05_entropy_tau1_s3"
    assert list(compare_methods.rows_of("tau", BASE, (1.0, 2.0))) == \
        ["kd tau=1", "kd tau=2", "tser tau=1", "tser tau=2"]
    table = {"methods": {"ce": _row([0.90, 0.91, 0.92])},
             "tau": {"kd tau=2": _row([0.90, 0.91, 0.92]), "tser tau=2": _row([0.92, 0.92, 0.95])},
             "variants": {"tser tau=2 ce_tau=2": _row([0.93, 0.91, 0.96])}}
    merged = bench_merge.merge(None, table, _invocation("x", ["tau/kd tau=2"]), BASE, SEEDS, 0.97)
    tests = merged["significance"]
    from scipy import stats

    pair = tests["tau/tser tau=2_vs_tau/kd tau=2"]
    assert pair["p"] == pytest.approx(stats.ttest_rel([0.92, 0.92, 0.95], [0.90, 0.91, 0.92]).pvalue)
    assert tests["variants/tser tau=2 ce_tau=2_vs_tau/tser tau=2"]["mean_diff"] == \
        pytest.approx(statistics.fmean([0.01, -0.01, 0.01]))
    assert merged["settings"]["groups"] == ["methods", "tau", "variants"]


def test_a_setting_keeps_its_own_file_and_refuses_other_shares(tmp_path):
    informed = {**BASE, "train_fraction": 0.25, "teacher_augment": True}
    table = {"methods": {"ce": _row([0.80, 0.81, 0.82]), "kd": _row([0.83, 0.84, 0.85])}}
    result = bench_merge.merge(None, table, _invocation("i", ["methods/ce"]), informed, SEEDS, 0.96)
    result["setting"] = {"name": "informed", "summary": "a test setting"}
    path = tmp_path / "mnist1d-informed.json"
    path.write_text(json.dumps(result))
    assert bench_merge.load_previous(path, informed, SEEDS)["setting"]["name"] == "informed"
    with pytest.raises(SystemExit, match="train_fraction"):
        bench_merge.load_previous(path, {**informed, "train_fraction": 0.5}, SEEDS)
    with pytest.raises(SystemExit, match="teacher_augment"):
        bench_merge.load_previous(path, BASE, SEEDS)
    text = markdown(result)
    assert text.startswith("# mnist1d (informed teacher)")
    assert "Setting: a test setting." in text and "on 25% of the training split" in text
    assert "cnn, --augment" in text
    # the memorised setting's recorded file (no such keys) still takes rows of its own setting
    assert bench_merge.load_previous(_first(tmp_path), BASE, SEEDS) is not None
    assert compare_methods.SETTINGS["memorised"].suffix == ""
    assert compare_methods.SETTINGS["informed"].student == {"train_fraction": 0.25}


@pytest.mark.slow
def test_two_invocations_split_the_grid(tmp_path):
    """The grid is one Optuna study (compare_methods.run_grid): two invocations of the same
    command train every run exactly once between them (was: a pid-file lock per run)."""
    import subprocess
    import time

    command = [sys.executable, str(Path(compare_methods.__file__)), "--dataset", "digits",
               "--seeds", "2", "--methods", "ce,kd", "--epochs", "1", "--teacher-epochs", "1",
               "--workdir", str(tmp_path / "runs"), "--results", str(tmp_path / "results"),
               "--heartbeat", "2"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    teacher = tmp_path / "runs" / "digits" / "teacher" / "teacher.pt"
    while not teacher.exists() and first.poll() is None:  # one teacher, trained by the first
        time.sleep(0.2)
    second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    outs = [first.communicate(timeout=900), second.communicate(timeout=900)]
    assert (first.returncode, second.returncode) == (0, 0), outs
    trained = [line.split(":")[0].strip() for out, _ in outs for line in out.splitlines()
               if line.startswith("  ") and ": test " in line]
    keys = {compare_methods.run_key(m, {"timesteps": 4, "alpha": 0.5, "tau": 1.0,
                                         "lam": 0.05}, s) for m in ("ce", "kd") for s in (0, 1)}
    assert sorted(trained) == sorted(keys)  # each run once, whoever trained it
    assert all((tmp_path / "runs" / "digits" / k / "metrics.json").exists() for k in keys)
