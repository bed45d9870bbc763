"""The spike-rate term (neurokd.losses.rate, neurokd.train.rates, docs/energy-aware.md):
against an independent computation from recorded spikes, its break-even targets against the
energy report's, the result's energy against `energy report`, and its bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional
from torch import nn

from neurokd.cli.rate_pricing import EnergyPricer
from neurokd.config import RunConfig
from neurokd.data import load_run_data, make_loader
from neurokd.losses import LOSS_SPECS, Method, RateLoss
from neurokd.models import build_student
from neurokd.train.rates import InputRates, rate_plan, spiking_layers

from helpers import assert_one_line_error, run_cli, run_subprocess

LAYERS = ("features.3", "features.6", "classifier.1")  # the digits cnn's layers fed by spikes


@pytest.fixture(scope="module")
def student_and_batch():
    config = RunConfig(threads=1)
    data = load_run_data(config)
    values = {**config.to_dict(), "input_shape": list(data.input_shape),
              "num_classes": data.num_classes}
    torch.manual_seed(0)
    student = build_student(values)
    x = next(iter(make_loader(data.val, 64)))[0]
    return student, x, values


def _recorded_spikes(student: nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Each synaptic layer's whole input, copied out by hooks of the test's own."""
    kept, handles = {}, []
    for name, module in student.named_modules():
        if name in LAYERS:
            handles.append(module.register_forward_hook(
                lambda m, args, out, name=name: kept.__setitem__(
                    name, args[0].detach().numpy().copy())))
    functional.reset_net(student)
    student(x)
    for handle in handles:
        handle.remove()
    return kept


def test_rate_term_equals_recorded_spikes(student_and_batch):
    student, x, _ = student_and_batch
    targets = {"features.3": 0.02, "features.6": 0.01, "classifier.1": 0.5}
    weight, margin = 3.0, 0.9
    rates = InputRates(student, targets)
    functional.reset_net(student)
    student(x)
    term = RateLoss(targets, weight, margin)(rates.values)
    spikes = _recorded_spikes(student, x)
    rates.close()
    assert all(set(np.unique(s)) <= {0.0, 1.0} for s in spikes.values())  # spikes, really
    expected = weight * sum(max(0.0, float(spikes[n].mean()) - margin * t) ** 2
                            for n, t in targets.items())
    assert float(term.detach()) == pytest.approx(expected, rel=1e-5)
    assert expected > 0
    student.zero_grad()
    term.backward()  # through the surrogate: the weights before each layer move
    assert student.features[0].weight.grad.abs().sum() > 0


def test_rate_term_zero_below_target(student_and_batch):
    student, x, _ = student_and_batch
    rates = InputRates(student, LAYERS)
    functional.reset_net(student)
    student(x)
    observed = {n: float(r.detach()) for n, r in rates.values.items()}
    # every target above what the layer runs at: nothing to push, no gradient
    term = RateLoss({n: (r + 0.01) / 0.9 for n, r in observed.items()}, 100.0, 0.9)(
        rates.values)
    rates.close()
    assert float(term.detach()) == 0.0
    student.zero_grad()
    term.backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in student.parameters())


def test_spiking_layers_name_the_input_layer(student_and_batch):
    student, x, _ = student_and_batch
    kinds = spiking_layers(student, x)
    assert kinds["features.0"] == "input from the data"
    assert all(kinds[n] == "" for n in LAYERS)
    assert student.training  # the probe put it back


@pytest.mark.parametrize("profile,model", [("loihi", "compute"), ("45nm-fp32", "memory")])
def test_targets_are_the_energy_reports_break_even(student_and_batch, profile, model):
    from neurokd.energy import estimate
    from neurokd.student.sources import StudentSource

    student, x, values = student_and_batch
    pricer = EnergyPricer.of(profile, model, "twin")
    plan = rate_plan({**values, "rate_target": "break-even"}, student, None, x, pricer)
    source = StudentSource(student, tuple(values["input_shape"]), values["timesteps"],
                           "student", config=values)
    report = estimate(source, x, profile, "twin", energy_model=model).to_dict()
    printed = {row["name"]: row["break_even_rate"] for row in report["layers"]}
    assert plan.break_even == printed
    for name in LAYERS:
        rate = printed[name]
        if 0 < rate < 1:
            assert plan.targets[name] == rate
        else:
            assert name in plan.untargeted and name not in plan.targets


def test_fixed_target_for_every_spiking_layer(student_and_batch):
    student, x, values = student_and_batch
    plan = rate_plan({**values, "rate_target": "0.05"}, student, None, x, None)
    assert plan.targets == dict.fromkeys(LAYERS, 0.05)
    assert set(plan.untargeted) == {"features.0"}


def test_rate_is_registered_like_a_loss():
    spec = LOSS_SPECS["rate"]
    assert spec.terms == ("rate",) and spec.params == ("rate_weight", "rate_margin")
    method = Method("tser", RunConfig().to_dict(), rate_targets={"a": 0.1})
    logits = torch.zeros(2, 3, 4)
    value = method(logits, torch.zeros(3, 4), torch.zeros(3, dtype=torch.long),
                   rates={"a": torch.tensor(0.5)})
    assert list(value.terms) == ["ce", "kl", "entropy", "rate"]
    assert float(value.terms["rate"]) == pytest.approx(100 * (0.5 - 0.09) ** 2)


@pytest.mark.parametrize("args,contains", [
    (["--rate-target", "fast"], "rate_target"),
    (["--rate-target", "1.5"], "rate_target"),
    (["--rate-target", "break-even", "--profile", "nope"], "nope"),
    (["--rate-target", "break-even", "--energy-model", "nope"], "nope"),
    (["--rate-target", "0.05", "--rate-weight", "-1"], "rate_weight"),
    (["--rate-target", "0.05", "--rate-margin", "-0.5"], "rate_margin"),
    (["--rate-target", "break-even", "--ann", "teacher", "--method", "ce"], "ann teacher"),
])
def test_bad_rate_options(capsys, tmp_path, args, contains):
    outcome = run_cli(capsys, "distill", "--out", str(tmp_path / "runs"), "--epochs", "1",
                      *args)
    assert_one_line_error(outcome, 2, contains)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_result_agrees_with_energy_report(tmp_path):
    run = tmp_path / "runs" / "r"
    outcome = run_subprocess("distill", "--out", str(tmp_path / "runs"), "--name", "r",
                             "--epochs", "2", "--teacher-epochs", "1", "--threads", "1",
                             "--rate-target", "break-even", "--energy-model", "memory",
                             "--quiet")
    assert outcome.code == 0, outcome.err
    assert "below break-even" in outcome.out and "energy SNN / ANN" in outcome.out
    metrics = json.loads((run / "metrics.json").read_text())
    history = metrics["history"][-1]
    assert set(history["input_rates"]) == set(metrics["rate"]["targets"])
    assert history["rate_targets"] == pytest.approx(
        {n: 0.9 * t for n, t in metrics["rate"]["targets"].items()})
    assert "rate" in history["terms"]
    report_path = tmp_path / "e.json"
    outcome = run_subprocess("energy", "report", str(run / "student.pt"), "--profile",
                             "45nm-fp32", "--energy-model", "memory", "--ann", "twin",
                             "--json", str(report_path))
    assert outcome.code == 0, outcome.err
    report = json.loads(report_path.read_text())
    energy = metrics["energy"]
    assert energy["ratio"] == pytest.approx(report["ratio"])
    assert energy["snn_energy_pj"] == pytest.approx(report["snn_energy_pj"])
    for row in report["layers"]:
        mine = energy["layers"][row["name"]]
        assert mine["break_even"] == pytest.approx(row["break_even_rate"])
        assert mine["below"] == row["below_break_even"]


@pytest.mark.slow
def test_targets_are_repriced_on_the_student_of_each_epoch(tmp_path, monkeypatch):
    """Break-even rates move as the student's activity changes: each epoch trains towards
    the break-even of the student it starts with (recomputed here by the energy estimator on
    the very weights the pricer saw), and last.pt keeps the targets in force for a resume."""
    from neurokd.energy import estimate
    from neurokd.student.sources import StudentSource
    from neurokd.train.distillation import distill, train_teacher

    calls = []
    original = EnergyPricer.break_even

    def recording(self, student, config, teacher, inputs):
        prices = original(self, student, config, teacher, inputs)
        calls.append(({k: v.clone() for k, v in student.state_dict().items()}, inputs.clone(),
                      prices))
        return prices

    monkeypatch.setattr(EnergyPricer, "break_even", recording)
    common = {"out": str(tmp_path), "threads": 1, "teacher_epochs": 1}
    teacher = train_teacher(RunConfig(name="t", **common))
    config = RunConfig(name="r", epochs=3, teacher=str(teacher), rate_target="break-even",
                       profile="loihi", energy_model="compute", rate_weight=100.0, **common)
    result = distill(config, pricer=EnergyPricer.of("loihi", "compute", "twin"))
    history = result.metrics["history"]
    assert len(calls) == 3  # the plan, then before epochs 2 and 3
    data = load_run_data(config)
    values = {**config.to_dict(), "input_shape": list(data.input_shape),
              "num_classes": data.num_classes}
    for epoch, (state, inputs, prices) in enumerate(calls, start=1):
        student = build_student(values)
        student.load_state_dict(state)
        source = StudentSource(student, tuple(values["input_shape"]), values["timesteps"],
                               "student", config=values)
        report = estimate(source, inputs, "loihi", "twin", energy_model="compute").to_dict()
        printed = {row["name"]: row["break_even_rate"] for row in report["layers"]}
        aims = history[epoch - 1]["rate_targets"]
        assert set(aims) == set(LAYERS)
        assert aims == pytest.approx({n: 0.9 * printed[n] for n in LAYERS}, rel=1e-9)
        assert prices == pytest.approx(printed)
    assert history[0]["rate_targets"] != history[2]["rate_targets"]  # they did move
    kept = torch.load(tmp_path / "r" / "last.pt", weights_only=True)["extra"]
    targets = result.metrics["rate"]["targets"]
    assert kept["rate.target_values"].tolist() == pytest.approx([targets[n] for n in LAYERS])
    assert {n: 0.9 * t for n, t in targets.items()} == pytest.approx(history[2]["rate_targets"])
