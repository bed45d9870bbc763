"""The losses against direct computations written out here, their terms, and the variants."""

import functools
import operator
import re

import pytest
import torch
import torch.nn.functional as F

from neurokd.losses import LOSS_SPECS, Method, get_loss, kd_loss, method_names, tser_loss
from neurokd.losses import tser_terms as tser


def _logits(steps=4, batch=6, classes=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    student = torch.randn(steps, batch, classes, generator=gen) * 2
    teacher = torch.randn(batch, classes, generator=gen) * 3
    targets = torch.randint(0, classes, (batch,), generator=gen)
    return student, teacher, targets


def _per_step(student, teacher, targets, tau, ce_tau=1.0, entropy_tau=None):
    """Mean over timesteps of CE(z_t/ce_tau), KL at tau (torch's kl_div), H at entropy_tau."""
    p = F.softmax(teacher / tau, dim=-1)
    ce = kl = entropy = 0.0
    for z in student:  # one timestep at a time
        ce += F.cross_entropy(z / ce_tau, targets)
        kl += F.kl_div(F.log_softmax(z / tau, -1), p, reduction="batchmean")
        q = F.softmax(z / (entropy_tau or tau), -1)
        entropy += -(q * q.log()).sum(-1).mean()
    steps = student.shape[0]
    return ce / steps, kl / steps, entropy / steps


@pytest.mark.parametrize("tau", [1.0, 2.0, 4.0])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_tser_equals_kd_for_one_step_without_entropy(alpha, tau):
    student, teacher, targets = _logits(steps=1)
    a = tser_loss(student, teacher, targets, alpha=alpha, tau=tau, lam=0.0)
    b = kd_loss(student, teacher, targets, alpha=alpha, tau=tau)
    assert abs(float(a) - float(b)) < 1e-6


def test_tser_terms_match_per_timestep_loop():
    student, teacher, targets = _logits(steps=5)
    alpha, tau, lam = 0.4, 2.5, 0.07
    ce, kl, entropy = _per_step(student, teacher, targets, tau)
    value = tser(student, teacher, targets, alpha=alpha, tau=tau, lam=lam)
    assert list(value.terms) == ["ce", "kl", "entropy"]
    assert torch.allclose(value.terms["ce"], (1 - alpha) * ce, atol=1e-6)
    assert torch.allclose(value.terms["kl"], alpha * tau**2 * kl, atol=1e-6)
    assert torch.allclose(value.terms["entropy"], -lam * entropy, atol=1e-6)
    expected = (1 - alpha) * ce + alpha * tau**2 * kl - lam * entropy
    assert torch.allclose(value.total, expected, atol=1e-6)
    assert torch.equal(tser_loss(student, teacher, targets, alpha, tau, lam), value.total)
    # The KL part alone (alpha=1, lam=0) is exactly the mean per-timestep KL times tau^2.
    kl_only = tser_loss(student, teacher, targets, alpha=1.0, tau=tau, lam=0.0)
    assert torch.allclose(kl_only, tau**2 * kl, atol=1e-6)


def _todays_tser(student_logits, teacher_logits, targets, alpha, tau, lam):
    """neurokd's tser before --ce-tau / --entropy-tau existed, copied operation by operation."""
    steps = student_logits.shape[0]
    teacher = teacher_logits.detach().unsqueeze(0).expand_as(student_logits)
    ce = F.cross_entropy(student_logits.flatten(0, 1), targets.repeat(steps))
    log_q = F.log_softmax(student_logits / tau, dim=-1)
    log_p = F.log_softmax(teacher / tau, dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1).mean()
    loss = (1 - alpha) * ce + alpha * tau**2 * kl
    if lam:
        log_q = F.log_softmax(student_logits / tau, dim=-1)
        loss = loss - lam * (-(log_q.exp() * log_q).sum(-1).mean())
    return loss


@pytest.mark.parametrize("alpha, tau, lam", [(0.5, 1.0, 0.05), (0.3, 2.0, 0.2), (0.9, 4.0, 0.0)])
def test_default_variant_is_todays_tser_bit_for_bit(alpha, tau, lam):
    student, teacher, targets = _logits(steps=4, seed=3)
    expected = _todays_tser(student, teacher, targets, alpha, tau, lam)
    for entropy_tau in (None, tau):  # unset means "same as --tau"
        z = student.clone().requires_grad_(True)
        got = tser_loss(z, teacher, targets, alpha=alpha, tau=tau, lam=lam, ce_tau=1.0,
                        entropy_tau=entropy_tau)
        assert torch.equal(got, expected)
        reference = student.clone().requires_grad_(True)
        _todays_tser(reference, teacher, targets, alpha, tau, lam).backward()
        got.backward()
        assert torch.equal(z.grad, reference.grad)


@pytest.mark.parametrize("ce_tau, entropy_tau", [(2.0, None), (1.0, 1.0), (3.0, 0.5),
                                                 (2.0, 2.0)])
def test_each_variant_matches_its_formula(ce_tau, entropy_tau):
    """CE on z_t/ce_tau without a ce_tau² factor; entropy of softmax(z_t/entropy_tau)."""
    student, teacher, targets = _logits(steps=3, seed=1)
    alpha, tau, lam = 0.6, 2.0, 0.1
    ce, kl, entropy = _per_step(student, teacher, targets, tau, ce_tau, entropy_tau)
    expected = (1 - alpha) * ce + alpha * tau**2 * kl - lam * entropy
    got = tser_loss(student, teacher, targets, alpha=alpha, tau=tau, lam=lam, ce_tau=ce_tau,
                    entropy_tau=entropy_tau)
    assert torch.allclose(got, expected, atol=1e-6)
    # The ablations take their CE at ce_tau too: ts-kl on the time-averaged logits.
    mean = student.mean(0)
    kl_mean = F.kl_div(F.log_softmax(mean / tau, -1), F.softmax(teacher / tau, -1),
                       reduction="batchmean")
    params = {"alpha": alpha, "tau": tau, "ce_tau": ce_tau}
    ts_kl = get_loss("ts-kl", **params)(student, teacher, targets)
    assert torch.allclose(ts_kl, (1 - alpha) * F.cross_entropy(mean / ce_tau, targets)
                          + alpha * tau**2 * kl, atol=1e-6)
    ts_ce = get_loss("ts-ce", **params)(student, teacher, targets)
    assert torch.allclose(ts_ce, (1 - alpha) * ce + alpha * tau**2 * kl_mean, atol=1e-6)


def test_kd_uses_time_averaged_logits():
    student, teacher, targets = _logits()
    mean = student.mean(0)
    expected = 0.5 * F.cross_entropy(mean, targets) + 0.5 * 9.0 * F.kl_div(
        F.log_softmax(mean / 3, -1), F.softmax(teacher / 3, -1), reduction="batchmean")
    assert torch.allclose(kd_loss(student, teacher, targets, alpha=0.5, tau=3.0), expected,
                          atol=1e-6)


def test_entropy_term_raises_student_entropy():
    student, teacher, targets = _logits(steps=3)
    z = student.clone().requires_grad_(True)
    tau, lam = 2.0, 0.5
    # The entropy part of the loss alone: loss(lam) - loss(0) = -lam * mean_t H(q_t).
    part = tser_loss(z, teacher, targets, tau=tau, lam=lam) - tser_loss(z, teacher, targets,
                                                                          tau=tau, lam=0.0)

    def entropy(logits):
        q = F.softmax(logits / tau, -1)
        return float(-(q * q.log()).sum(-1).mean())

    assert float(part.detach()) == pytest.approx(-lam * entropy(student), rel=1e-5)
    part.backward()
    stepped = z.detach() - 0.5 * z.grad  # gradient descent on the loss...
    assert entropy(stepped) > entropy(student)  # ...raises the entropy


def test_gradient_reaches_every_student_parameter():
    from spikingjelly.activation_based import functional

    from neurokd.config import RunConfig
    from neurokd.models import build_student

    config = RunConfig(input_shape=[1, 8, 8], num_classes=10).to_dict()
    torch.manual_seed(0)
    student = build_student(config)
    x = torch.rand(16, 1, 8, 8) * 3
    functional.reset_net(student)
    _, teacher, targets = _logits(batch=16, classes=10)
    loss = tser_loss(student(x), teacher, targets)
    loss.backward()
    for name, param in student.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_bound_losses_use_only_what_they_read():
    from neurokd.errors import ConfigError

    student, teacher, targets = _logits()
    ce = get_loss("ce")
    assert torch.allclose(ce(student, None, targets), F.cross_entropy(student.mean(0), targets))
    with pytest.raises(ValueError, match="teacher"):
        get_loss("tser")(student, None, targets)
    with pytest.raises(ConfigError, match="does not read lam"):
        get_loss("kd", alpha=0.5, lam=0.1)


def test_ablation_rows_interpolate_between_kd_and_tser():
    student, teacher, targets = _logits(steps=4)
    kw = {"alpha": 0.5, "tau": 2.0}
    both = get_loss("ts-both", **kw)(student, teacher, targets)
    assert torch.allclose(both, tser_loss(student, teacher, targets, lam=0.0, **kw))
    mean = student.mean(0)
    kl_mean = F.kl_div(F.log_softmax(mean / 2, -1), F.softmax(teacher / 2, -1),
                       reduction="batchmean")
    ce_steps = torch.stack([F.cross_entropy(z, targets) for z in student]).mean()
    expected = 0.5 * ce_steps + 0.5 * 4.0 * kl_mean
    assert torch.allclose(get_loss("ts-ce", **kw)(student, teacher, targets), expected, atol=1e-6)
    kd = kd_loss(student, teacher, targets, **kw)
    ts_kl = get_loss("ts-kl", **kw)(student, teacher, targets)
    kl_steps = torch.stack([F.kl_div(F.log_softmax(z / 2, -1), F.softmax(teacher / 2, -1),
                                     reduction="batchmean") for z in student]).mean()
    assert torch.allclose(ts_kl, 0.5 * F.cross_entropy(mean, targets) + 2.0 * kl_steps, atol=1e-6)
    assert not torch.allclose(ts_kl, kd)


@pytest.mark.parametrize("name", method_names())
def test_every_method_returns_its_terms_summing_to_the_total(name):
    from neurokd.config import RunConfig
    from neurokd.losses import parse_method

    torch.manual_seed(0)
    student, teacher, targets = _logits(batch=6)
    student.requires_grad_(True)
    student_features, teacher_features = torch.rand(6, 4, 3, 3), torch.rand(6, 5, 2, 2)
    method = Method(name, RunConfig(method=name).to_dict(), student_features.shape,
                    teacher_features.shape)
    value = method(student, teacher, targets, student_features, teacher_features)
    declared = [term for spec in parse_method(name).specs for term in spec.terms]
    assert list(value.terms) == declared
    assert torch.equal(functools.reduce(operator.add, value.terms.values()), value.total)
    assert torch.isfinite(value.total)
    value.total.backward()
    assert torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0
    for head, param in method.named_parameters():  # the feature heads train too
        assert param.grad is not None, head


def test_feature_terms_are_weighted_by_feature_weight():
    from neurokd.losses import HintLoss

    torch.manual_seed(0)
    head = HintLoss(torch.Size([4, 3]), torch.Size([4, 2]), feature_weight=0.25)
    student_features, teacher_features = torch.rand(4, 3), torch.rand(4, 2)
    expected = 0.25 * ((student_features @ head.project.weight.T - teacher_features) ** 2).mean()
    assert torch.allclose(head(student_features, teacher_features), expected, atol=1e-7)


def test_every_spec_reads_only_runconfig_fields():
    from dataclasses import fields

    from neurokd.config import RunConfig

    known = {f.name for f in fields(RunConfig)}
    for spec in LOSS_SPECS.values():
        assert set(spec.params) <= known, spec.name


def test_one_naming_rule_for_parser_config_and_cli():
    from neurokd.cli.distill import distill
    from neurokd.config import RunConfig
    from neurokd.errors import ConfigError
    from neurokd.losses import MethodParts, parse_method

    for name in method_names():
        assert RunConfig(method=name).method == name
        assert parse_method(name).name == name
    assert parse_method("ts-ce+fitnet") == MethodParts("ts-ce", ("fitnet",))
    assert parse_method("bkd") == MethodParts("ce", ("bkd",))
    assert {"ts-ce+fitnet", "kd+fitnet+bkd", "fitnet+bkd"} <= set(method_names())
    for wrong, spelled in (("fitnet+tser", "tser+fitnet"), ("ce+fitnet", "fitnet"),
                           ("bkd+fitnet", "fitnet+bkd")):
        for check in (parse_method, lambda n: RunConfig(method=n)):
            with pytest.raises(ConfigError, match=re.escape(f"spelled '{spelled}'")):
                check(wrong)
    for bad in ("kd+tser", "fitnet+fitnet", "kd+nope", "kd+", "", None, 3):
        for check in (parse_method, lambda n: RunConfig(method=n)):
            with pytest.raises(ConfigError, match="method"):
                check(bad)
    option = next(p for p in distill.params if p.name == "method")
    assert tuple(option.type.choices) == method_names()


@pytest.mark.parametrize("key, value", [
    ("ce_tau", 0), ("ce_tau", -1.0), ("ce_tau", float("inf")), ("ce_tau", float("nan")),
    ("ce_tau", True), ("ce_tau", "2"), ("ce_tau", None),
    ("entropy_tau", 0.0), ("entropy_tau", -0.5), ("entropy_tau", float("inf")),
    ("entropy_tau", False), ("entropy_tau", "1"), ("tau", float("inf")),
])
def test_variant_temperatures_are_validated(key, value):
    from neurokd.config import RunConfig
    from neurokd.errors import ConfigError

    with pytest.raises(ConfigError, match=key):
        RunConfig.from_dict({key: value})


def test_variant_temperatures_default_and_convert():
    from neurokd.config import RunConfig

    default = RunConfig()
    assert default.ce_tau == 1.0 and default.entropy_tau is None
    config = RunConfig.from_dict({"ce_tau": 2, "entropy_tau": 3})  # TOML integers
    assert (config.ce_tau, config.entropy_tau) == (2.0, 3.0)
    assert isinstance(config.ce_tau, float) and isinstance(config.entropy_tau, float)


def test_variant_options_reach_the_run_and_history_records_terms(tmp_path, capsys,
                                                                  monkeypatch):
    import json

    from helpers import run_cli

    outcome = run_cli(capsys, "distill", "--out", str(tmp_path), "--name", "v", "--epochs", "1",
                      "--teacher-epochs", "1", "--width", "8", "--teacher-width", "8",
                      "--batch-size", "128", "--ce-tau", "2", "--entropy-tau", "0.5", "--quiet")
    assert outcome.code == 0, outcome.err
    run = tmp_path / "v"
    assert 'ce_tau = 2.0' in (run / "config.toml").read_text()
    assert 'entropy_tau = 0.5' in (run / "config.toml").read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["ce_tau"], metrics["entropy_tau"]) == (2.0, 0.5)
    [student_epoch], [teacher_epoch] = metrics["history"], metrics["teacher_history"]
    assert list(student_epoch["terms"]) == ["ce", "kl", "entropy"]
    assert student_epoch["terms"]["entropy"] < 0 < student_epoch["terms"]["kl"]
    # Each step's total is the float32 sum of its terms; the epoch means agree to that rounding.
    assert sum(student_epoch["terms"].values()) == pytest.approx(student_epoch["loss"], rel=1e-6)
    assert list(teacher_epoch["terms"]) == ["ce"]
    assert teacher_epoch["terms"]["ce"] == pytest.approx(teacher_epoch["loss"], rel=1e-12)
    monkeypatch.chdir(tmp_path)
    refused = run_cli(capsys, "distill", "--name", "bad", "--ce-tau", "0")
    assert refused.code == 2 and "ce_tau" in refused.err and not (tmp_path / "runs").exists()
