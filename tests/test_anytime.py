"""Any-time students (neurokd.anytime, docs/anytime.md): the accuracy after every timestep, the
exit rules, their calibration on validation, the oracle bound, and where a run records them.

Every figure is held to an explicit per-sample, per-timestep loop written here, not to the
vectorised code it checks."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset, Subset

from neurokd.anytime import (
    EXIT_RULES,
    accuracy_at_timestep,
    accuracy_by_timestep,
    apply_rule,
    calibrate,
    check_threshold,
    checked_exit_record,
    exit_record,
    exit_steps,
    oracle_steps,
    rule_scores,
)
from neurokd.errors import ConfigError, NeuroKDError

from helpers import assert_one_line_error, run_cli


def _logits(timesteps: int = 4, samples: int = 60, classes: int = 5, seed: int = 0):
    """Logits that grow surer of the label over time, as a trained student's do, with noise
    enough that some samples are wrong early, some late and some never right."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (samples,), generator=generator)
    noise = torch.randn(timesteps, samples, classes, generator=generator) * 1.5
    signal = torch.nn.functional.one_hot(labels, classes).float()
    ramp = torch.linspace(0.2, 1.5, timesteps).view(-1, 1, 1)
    return ramp * signal * 2 + noise, labels


def _loop_prefix_prediction(logits: torch.Tensor, t: int, b: int) -> int:
    """argmax of the mean of steps 1..t of sample b, summed one step at a time."""
    classes = logits.shape[2]
    sums = [0.0] * classes
    for s in range(t):
        for k in range(classes):
            sums[k] += float(logits[s, b, k])
    means = [value / t for value in sums]
    return max(range(classes), key=lambda k: (means[k], -k))


def _loop_probabilities(logits: torch.Tensor, t: int, b: int) -> list[float]:
    classes = logits.shape[2]
    means = [sum(float(logits[s, b, k]) for s in range(t)) / t for k in range(classes)]
    top = max(means)
    exps = [math.exp(m - top) for m in means]
    return [e / sum(exps) for e in exps]


def _loop_score(rule: str, p: list[float]) -> float:
    if rule == "confidence":
        return max(p)
    if rule == "entropy":
        return -sum(q * math.log(q) for q in p if q > 0) / math.log(len(p))
    first, second = sorted(p, reverse=True)[:2]
    return first - second


def _loop_fires(rule: str, score: float, threshold: float) -> bool:
    return score <= threshold if rule == "entropy" else score >= threshold


# --- the accuracy after every timestep ------------------------------------------------------

@pytest.mark.parametrize("timesteps", [1, 4, 7])
def test_prefix_and_single_step_accuracies_equal_explicit_loops(timesteps):
    logits, labels = _logits(timesteps, samples=45, classes=6, seed=timesteps)
    steps, samples = logits.shape[:2]
    prefix = [sum(_loop_prefix_prediction(logits, t, b) == int(labels[b]) for b in range(samples))
              / samples for t in range(1, steps + 1)]
    single = [sum(max(range(6), key=lambda k, t=t, b=b: float(logits[t, b, k]))
                  == int(labels[b]) for b in range(samples)) / samples for t in range(steps)]
    assert accuracy_by_timestep(logits, labels) == pytest.approx(prefix, abs=1e-12)
    assert accuracy_at_timestep(logits, labels) == pytest.approx(single, abs=1e-12)
    # the curves are not the same thing (else one of these checks would prove nothing)
    if timesteps > 1:
        assert prefix != single


def test_logits_without_a_time_axis_are_refused():
    with pytest.raises(ValueError, match=r"\[T, B, K\]"):
        accuracy_by_timestep(torch.zeros(8, 3), torch.zeros(8, dtype=torch.long))


def _student_and_batches(dataset: str, encoding: str | None):
    """A freshly built student of the data set's shape and 40 of its test samples in batches
    of 16 (the last one short), as evaluation loads them."""
    from neurokd.config import RunConfig
    from neurokd.data import load_run_data, make_loader
    from neurokd.models import build_student

    config = RunConfig(dataset=dataset, encoding=encoding, timesteps=3, width=4)
    data = load_run_data(config)
    torch.manual_seed(0)
    student = build_student({**config.to_dict(), "input_shape": list(data.input_shape),
                             "num_classes": data.num_classes})
    return student, make_loader(Subset(data.test, range(40)), 16)


@pytest.mark.parametrize("dataset,encoding", [("digits", None), ("digits", "rate"),
                                              ("digits-dvs", None)],
                         ids=["direct", "rate", "events"])
def test_evaluation_counts_every_timestep_of_a_student(dataset, encoding):
    from spikingjelly.activation_based import functional

    from neurokd.train.evaluation import evaluate_layers

    student, loader = _student_and_batches(dataset, encoding)
    result = evaluate_layers(student, loader, torch.device("cpu"), keep_logits=True)
    # independently: the student's own outputs, batch by batch, counted in loops
    outputs, labels = [], []
    with torch.no_grad():
        for x, y in loader:
            functional.reset_net(student)
            outputs.append(student(x))
            labels.append(y)
    logits, labels = torch.cat(outputs, dim=1), torch.cat(labels)
    assert logits.shape == (3, 40, 10) and torch.equal(result.logits, logits)
    assert torch.equal(result.labels, labels)
    prefix = [sum(_loop_prefix_prediction(logits, t, b) == int(labels[b]) for b in range(40))
              / 40 for t in (1, 2, 3)]
    assert result.accuracy_by_timestep == pytest.approx(prefix, abs=1e-12)
    assert result.accuracy_at_timestep == accuracy_at_timestep(logits, labels)
    assert result.accuracy == result.accuracy_by_timestep[-1]  # one count, not approximately


# --- exit rules -----------------------------------------------------------------------------

def test_the_registry_lists_three_rules_each_with_its_range():
    assert list(EXIT_RULES) == ["confidence", "entropy", "margin"]
    for rule in EXIT_RULES.values():
        assert check_threshold(rule, rule.low) == rule.low
        for bad in (rule.low - 0.01, rule.high + 0.01, float("nan"), True, "0.5", None):
            with pytest.raises(ConfigError, match=f"the {rule.name} exit rule takes"):
                check_threshold(rule, bad)


@pytest.mark.parametrize("rule", list(EXIT_RULES))
def test_exit_steps_equal_a_per_sample_loop(rule):
    logits, labels = _logits(seed=3)
    steps, samples = logits.shape[:2]
    scores = [[_loop_score(rule, _loop_probabilities(logits, t, b)) for b in range(samples)]
              for t in range(1, steps + 1)]
    assert rule_scores(rule, logits).tolist() == [pytest.approx(row, abs=1e-12)
                                                  for row in scores]
    ordered = sorted(value for row in scores for value in row)
    # thresholds between two neighbouring scores: no score sits on one, so rounding in the
    # vectorised softmax cannot flip a comparison the loop makes
    for q in (0.1, 0.4, 0.7, 0.95):
        i = int(q * (len(ordered) - 1))
        threshold = (ordered[i] + ordered[i + 1]) / 2
        expected_steps, expected_predictions = [], []
        for b in range(samples):
            stop = next((t for t in range(1, steps + 1)
                         if _loop_fires(rule, scores[t - 1][b], threshold)), steps)
            expected_steps.append(stop)
            expected_predictions.append(_loop_prefix_prediction(logits, stop, b))
        assert exit_steps(rule, logits, threshold).tolist() == expected_steps
        outcome = apply_rule(rule, logits, threshold)
        assert outcome.predictions.tolist() == expected_predictions
        assert outcome.histogram == [expected_steps.count(t) for t in range(1, steps + 1)]
        assert outcome.mean_timesteps == pytest.approx(sum(expected_steps) / samples)
        assert 1 < len(set(expected_steps))  # the threshold does stop samples at several steps


@pytest.mark.parametrize("rule,never", [("confidence", 1.0), ("entropy", 0.0), ("margin", 1.0)])
def test_a_threshold_that_never_fires_runs_every_sample_to_T(rule, never):
    logits, labels = _logits(seed=5)  # no softmax here is exactly one-hot
    outcome = apply_rule(rule, logits, never)
    assert outcome.steps.tolist() == [4] * len(labels)
    assert outcome.histogram == [0, 0, 0, len(labels)]
    assert outcome.accuracy(labels) == accuracy_by_timestep(logits, labels)[-1]


def test_oracle_steps_equal_a_loop():
    logits, labels = _logits(timesteps=5, seed=7)
    steps, samples = logits.shape[:2]
    expected = []
    for b in range(samples):
        right = [_loop_prefix_prediction(logits, t, b) == int(labels[b])
                 for t in range(1, steps + 1)]
        earliest = steps  # wrong at T: no correct suffix, counted as T
        for t in range(steps, 0, -1):
            if not right[t - 1]:
                break
            earliest = t
        expected.append(earliest)
    assert oracle_steps(logits, labels).tolist() == expected
    assert len(set(expected)) > 2


# --- calibration ----------------------------------------------------------------------------

def _brute_force(rule: str, logits, labels, drop: float):
    """Every score as a threshold (and the range's cautious end), applied one by one: the
    fewest mean timesteps among those within ``drop`` points of the full-T accuracy."""
    full = accuracy_by_timestep(logits, labels)[-1]
    scores = sorted(set(rule_scores(rule, logits).flatten().tolist()))
    spec = EXIT_RULES[rule]
    candidates = scores + [spec.high if spec.fires_above else spec.low]
    allowed = []
    for threshold in candidates:
        outcome = apply_rule(rule, logits, threshold)
        if 100 * (full - outcome.accuracy(labels)) <= drop + 1e-9:
            allowed.append(outcome.mean_timesteps)
    return min(allowed), full


@pytest.mark.parametrize("rule", list(EXIT_RULES))
@pytest.mark.parametrize("drop", [0.0, 2.0, 10.0])
def test_calibration_picks_the_fewest_timesteps_within_the_drop(rule, drop):
    logits, labels = _logits(samples=80, seed=11)
    chosen = calibrate(rule, logits, labels, drop)
    fewest, full = _brute_force(rule, logits, labels, drop)
    assert chosen.mean_timesteps == pytest.approx(fewest)
    assert chosen.full_accuracy == full
    # the threshold it reports gives what it reports
    outcome = apply_rule(rule, logits, chosen.threshold)
    assert outcome.mean_timesteps == pytest.approx(chosen.mean_timesteps)
    assert outcome.accuracy(labels) == pytest.approx(chosen.accuracy)
    assert 100 * (full - chosen.accuracy) <= drop + 1e-9
    assert EXIT_RULES[rule].low <= chosen.threshold <= EXIT_RULES[rule].high


def test_calibration_with_any_drop_allowed_stops_everything_at_step_1():
    logits, labels = _logits(seed=2)
    for rule in EXIT_RULES:
        assert calibrate(rule, logits, labels, 100.0).mean_timesteps == 1.0


def test_calibration_never_reads_the_test_split():
    val_logits, val_labels = _logits(samples=70, seed=21)
    test_logits, test_labels = _logits(samples=50, seed=22)
    clean = exit_record("confidence", val_logits, val_labels, test_logits, test_labels,
                        drop_points=1.0)
    poisoned_labels = (test_labels + 1) % 5  # every test label wrong
    poisoned_logits = -test_logits           # and the logits upside down
    poisoned = exit_record("confidence", val_logits, val_labels, poisoned_logits,
                           poisoned_labels, drop_points=1.0)
    assert poisoned["threshold"] == clean["threshold"]
    assert poisoned["validation_accuracy"] == clean["validation_accuracy"]
    assert poisoned["validation_mean_timesteps"] == clean["validation_mean_timesteps"]
    assert poisoned["test_accuracy"] != clean["test_accuracy"]  # the test split was poisoned
    # while the validation split does move it
    other = exit_record("confidence", test_logits, test_labels, test_logits, test_labels,
                        drop_points=1.0)
    assert other["threshold"] != clean["threshold"]


def test_exit_record_with_a_given_threshold_and_its_check():
    logits, labels = _logits(seed=4)
    record = exit_record("margin", logits, labels, logits, labels, threshold=0.3)
    outcome = apply_rule("margin", logits, 0.3)
    assert record["calibrated_on"] == "given" and record["drop_points"] is None
    assert record["exit_histogram"] == outcome.histogram
    assert record["test_accuracy"] == outcome.accuracy(labels)
    assert record["oracle_mean_timesteps"] == pytest.approx(
        oracle_steps(logits, labels).double().mean().item())
    assert checked_exit_record(json.loads(json.dumps(record)), "m.json") == record
    for key, bad in (("rule", "bogus"), ("threshold", 2.0), ("exit_histogram", [1, 2]),
                     ("mean_timesteps", float("nan")), ("calibrated_on", "test")):
        with pytest.raises(NeuroKDError, match=f"m.json: exit.{key.split('_')[0]}"):
            checked_exit_record(record | {key: bad}, "m.json")
    with pytest.raises(ConfigError, match="not both"):
        exit_record("margin", logits, labels, logits, labels, threshold=0.3, drop_points=1.0)


# --- the command line -----------------------------------------------------------------------

@pytest.mark.parametrize("args,contains", [
    (["--exit-rule", "bogus"], "'bogus' is not one of 'confidence', 'entropy', 'margin'"),
    (["--exit-rule", "confidence", "--exit-threshold", "1.5"], "takes a threshold in [0, 1]"),
    (["--exit-rule", "entropy", "--exit-threshold", "-0.1"], "takes a threshold in [0, 1]"),
    (["--exit-rule", "margin", "--exit-drop", "-1"], "exit_drop must be in [0, 100]"),
    (["--exit-rule", "margin", "--exit-threshold", "0.5", "--exit-drop", "1"], "not both"),
    (["--exit-rule", "confidence"], "needs exit_threshold"),
    (["--exit-threshold", "0.9"], "exit_threshold needs an exit_rule"),
    (["--exit-drop", "0.5"], "exit_drop needs an exit_rule"),
], ids=["unknown-rule", "threshold-high", "threshold-negative", "drop-negative", "both",
        "neither", "threshold-alone", "drop-alone"])
def test_bad_exit_options_are_one_line_and_write_nothing(args, contains, tmp_path, capsys,
                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    outcome = run_cli(capsys, "distill", "--out", "runs", "--epochs", "1", *args)
    assert_one_line_error(outcome, 2, contains)
    assert list(tmp_path.iterdir()) == []


def test_a_bad_exit_threshold_in_a_config_file_names_the_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("run.toml").write_text('exit_rule = "confidence"\nexit_threshold = 7\n')
    outcome = run_cli(capsys, "distill", "--config", "run.toml", "--out", "runs")
    assert_one_line_error(outcome, 2, "run.toml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.toml"]


# --- a real run -----------------------------------------------------------------------------

def test_metrics_hold_the_curves_of_a_real_run(trained_run):
    """The shared 2-epoch digits run: its curve's last point is its accuracy, exactly, and the
    curve is what the saved student gives on the test split, counted again here."""
    import neurokd
    from neurokd.data import load_data, make_loader

    metrics = json.loads((trained_run / "metrics.json").read_text())
    curve = metrics["accuracy_by_timestep"]
    assert len(curve) == metrics["timesteps"] == 4
    assert curve[-1] == metrics["student_accuracy"]
    assert len(metrics["accuracy_at_timestep"]) == 4 and metrics["exit"] is None
    for record in metrics["history"]:
        assert record["val_accuracy_by_timestep"][-1] == record["val_accuracy"]
    run = neurokd.load(trained_run / "student.pt")
    outputs, labels = [], []
    with torch.no_grad():
        for x, y in make_loader(load_data("digits").test, 100):
            from spikingjelly.activation_based import functional

            functional.reset_net(run.student)
            outputs.append(run.student(x))
            labels.append(y)
    logits, labels = torch.cat(outputs, dim=1), torch.cat(labels)
    assert curve == accuracy_by_timestep(logits, labels)
    assert metrics["accuracy_at_timestep"] == accuracy_at_timestep(logits, labels)


def _exit_record_for_plot() -> dict:
    return {"rule": "entropy", "threshold": 0.25, "calibrated_on": "validation",
            "drop_points": 0.5, "timesteps": 4, "validation_accuracy": 0.9,
            "validation_mean_timesteps": 1.8, "test_accuracy": 0.88, "mean_timesteps": 1.9,
            "exit_histogram": [200, 100, 20, 40], "oracle_mean_timesteps": 1.4}


def test_plot_reads_back_the_curves_and_the_exit(trained_run, tmp_path, capsys):
    import matplotlib.pyplot as plt

    from neurokd.cli.history_plot import history_figure, read_history

    run = tmp_path / "run"
    run.mkdir()
    metrics = json.loads((trained_run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps(metrics | {"exit": _exit_record_for_plot()}))
    outcome = run_cli(capsys, "plot", str(run))
    assert outcome.code == 0, outcome.err
    assert (run / "training.png").is_file()
    path, checked = read_history(run)
    figure = history_figure("run", checked)
    try:
        timestep, exits = figure.axes[5], figure.axes[6]
        lines = {line.get_label(): list(line.get_ydata()) for line in timestep.lines}
        assert lines["test, steps 1..t"] == [100 * v for v in metrics["accuracy_by_timestep"]]
        assert lines["test, step t alone"] == [100 * v for v in metrics["accuracy_at_timestep"]]
        kept = next(r for r in metrics["history"] if r["epoch"] == metrics["best_epoch"])
        assert lines[f"validation, steps 1..t (kept epoch {metrics['best_epoch']})"] == \
            [100 * v for v in kept["val_accuracy_by_timestep"]]
        assert [bar.get_height() for bar in exits.patches] == [200, 100, 20, 40]
        assert "entropy ≤ 0.25" in exits.get_title()
    finally:
        plt.close(figure)


def test_plot_refuses_a_damaged_curve(trained_run, tmp_path, capsys):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    for damage, field in ((metrics | {"accuracy_by_timestep": ["x"]}, "accuracy_by_timestep"),
                          (metrics | {"exit": {"rule": "bogus"}}, "exit.rule")):
        (tmp_path / "metrics.json").write_text(json.dumps(damage))
        outcome = run_cli(capsys, "plot", str(tmp_path), "-o", str(tmp_path / "x.png"))
        assert_one_line_error(outcome, 2, field)
        assert not (tmp_path / "x.png").exists()


def test_training_log_writes_the_validation_curve(tmp_path):
    import csv

    from neurokd.train.training_log import TrainingLog

    log = TrainingLog(tmp_path)
    try:
        log("student", {"epoch": 1, "loss": 1.0, "val_accuracy": 0.5,
                        "val_accuracy_by_timestep": [0.25, 0.4, 0.5]})
    finally:
        log.close()
    with open(tmp_path / "student.csv", newline="") as handle:
        row = next(csv.DictReader(handle))
    assert [float(row[f"val_by_t:{t}"]) for t in (1, 2, 3)] == [0.25, 0.4, 0.5]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert [events.Scalars(f"student/accuracy/val_by_timestep/t{t}")[0].value
            for t in (1, 2, 3)] == pytest.approx([0.25, 0.4, 0.5])
    assert "student/accuracy/val" in tags


class _WrongLabels(Dataset):
    """A split with every label moved to the next class."""

    def __init__(self, base: Dataset, classes: int):
        self.base, self.classes = base, classes

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        x, y = self.base[index][:2]
        return x, (int(y) + 1) % self.classes


def _exit_run(out: Path, name: str, teacher: Path):
    from neurokd import RunConfig, distill

    # one thread: both runs must train the very same student, summing in the same order
    return distill(RunConfig(out=str(out), name=name, epochs=1, teacher=str(teacher),
                             exit_rule="confidence", exit_drop=0.5, threads=1))


@pytest.mark.slow  # two trainings
def test_an_exit_run_calibrates_on_validation_and_its_exports_carry_it(trained_run, tmp_path,
                                                                       monkeypatch):
    import nir
    import onnx

    import neurokd
    from neurokd.data import load_run_data, make_loader
    from neurokd.exporters import export_nir, export_onnx
    from neurokd.train import distillation
    from neurokd.train.evaluation import evaluate_layers

    clean = _exit_run(tmp_path, "clean", trained_run / "teacher.pt")
    record = json.loads((clean.run_dir / "metrics.json").read_text())["exit"]
    assert record["rule"] == "confidence" and record["calibrated_on"] == "validation"
    assert record["drop_points"] == 0.5 and sum(record["exit_histogram"]) == 360
    # the same numbers again from the saved student: calibrated on validation, measured on test
    data = load_run_data(clean.config)
    student = neurokd.load(clean.checkpoint).student
    val = evaluate_layers(student, make_loader(data.val, 64), torch.device("cpu"),
                          keep_logits=True)
    test = evaluate_layers(student, make_loader(data.test, 64), torch.device("cpu"),
                           keep_logits=True)
    assert calibrate("confidence", val.logits, val.labels, 0.5).threshold == record["threshold"]
    outcome = apply_rule("confidence", test.logits, record["threshold"])
    assert record["test_accuracy"] == outcome.accuracy(test.labels)
    assert record["exit_histogram"] == outcome.histogram

    # the same run with every test label wrong: the threshold cannot move
    loader = distillation.load_run_data

    def poisoned(config, reporter=None):
        bundle = loader(config, reporter)
        return dataclasses.replace(bundle, test=_WrongLabels(bundle.test, bundle.num_classes))

    monkeypatch.setattr(distillation, "load_run_data", poisoned)
    spoiled = _exit_run(tmp_path, "poisoned", trained_run / "teacher.pt")
    assert spoiled.metrics["exit"]["threshold"] == record["threshold"]
    assert spoiled.metrics["exit"]["validation_accuracy"] == record["validation_accuracy"]
    assert spoiled.metrics["exit"]["test_accuracy"] != record["test_accuracy"]

    onnx_path = export_onnx(clean.checkpoint, tmp_path / "s.onnx", max_samples=16,
                            exporter="torchscript").path
    props = {p.key: p.value for p in onnx.load(onnx_path).metadata_props}
    assert json.loads(props["neurokd.exit"]) == record
    nir_path = export_nir(clean.checkpoint, tmp_path / "s.nir", max_samples=16).path
    stored = nir.read(nir_path).metadata["exit"]
    assert json.loads(stored.decode() if isinstance(stored, bytes) else stored) == record
