"""The losses against direct computations written out here."""

import pytest
import torch
import torch.nn.functional as F

from neurokd.losses import LOSSES, get_loss, kd_loss, tser_loss


def _logits(steps=4, batch=6, classes=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    student = torch.randn(steps, batch, classes, generator=gen) * 2
    teacher = torch.randn(batch, classes, generator=gen) * 3
    targets = torch.randint(0, classes, (batch,), generator=gen)
    return student, teacher, targets


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
    ce = kl = entropy = 0.0
    p = F.softmax(teacher / tau, dim=-1)
    for z in student:  # one timestep at a time, with torch's own kl_div
        ce += F.cross_entropy(z, targets)
        kl += F.kl_div(F.log_softmax(z / tau, -1), p, reduction="batchmean")
        q = F.softmax(z / tau, -1)
        entropy += -(q * q.log()).sum(-1).mean()
    steps = student.shape[0]
    expected = (1 - alpha) * ce / steps + alpha * tau**2 * kl / steps - lam * entropy / steps
    got = tser_loss(student, teacher, targets, alpha=alpha, tau=tau, lam=lam)
    assert torch.allclose(got, expected, atol=1e-6)
    # The KL part alone (alpha=1, lam=0) is exactly the mean per-timestep KL times tau^2.
    kl_only = tser_loss(student, teacher, targets, alpha=1.0, tau=tau, lam=0.0)
    assert torch.allclose(kl_only, tau**2 * kl / steps, atol=1e-6)


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


def test_registry_binds_only_accepted_hyperparameters():
    assert set(LOSSES) >= {"ce", "kd", "tser"}
    student, teacher, targets = _logits()
    ce = get_loss("ce", alpha=0.9, tau=3.0, lam=1.0)
    assert torch.allclose(ce(student, None, targets), F.cross_entropy(student.mean(0), targets))
    with pytest.raises(ValueError, match="teacher"):
        get_loss("tser")(student, None, targets)


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
