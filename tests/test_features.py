"""Feature and hybrid KD: taps, heads trained but never saved, each loss decreases."""

from __future__ import annotations

import pytest
import torch
from spikingjelly.activation_based import functional, neuron
from torch import nn

from neurokd.config import RunConfig
from neurokd.losses import Method, MethodParts, parse_method
from neurokd.models import build_student, build_teacher
from neurokd.train.features import FeatureTap, default_taps


def _config(**kw) -> dict:
    return RunConfig(input_shape=[1, 8, 8], num_classes=10, **kw).to_dict()


def test_default_taps_capture_the_penultimate_layers():
    config = _config()
    student, teacher = build_student(config), build_teacher(config)
    student_path, teacher_path = default_taps(config)
    s_tap, t_tap = FeatureTap(student, student_path), FeatureTap(teacher, teacher_path)
    x = torch.rand(5, 1, 8, 8)
    functional.reset_net(student)
    student(x)
    teacher(x)
    assert isinstance(dict(student.named_modules())[student_path], neuron.LIFNode)
    assert s_tap.value.shape == (4, 5, 32, 2, 2)  # [T, B, 2*width, 2, 2]: what Flatten gets
    assert set(s_tap.value.unique().tolist()) <= {0.0, 1.0}  # spikes
    assert t_tap.value.shape == (1, 5, 64, 2, 2)  # the cnn teacher's last ReLU (T=1 axis)

    image = _config(student="resnet", teacher_arch="resnet18", width=8)
    image.update(input_shape=[3, 32, 32])
    student, teacher = build_student(image), build_teacher(image)
    s_tap = FeatureTap(student, default_taps(image)[0])
    t_tap = FeatureTap(teacher, default_taps(image)[1])
    functional.reset_net(student)
    student(torch.rand(2, 3, 32, 32))
    teacher(torch.rand(2, 3, 32, 32))
    assert s_tap.value.shape == (4, 2, 32, 8, 8)
    assert t_tap.value.shape == (2, 512, 4, 4)


def test_unknown_tap_and_method_are_refused():
    from neurokd.errors import ConfigError

    with pytest.raises(ConfigError, match="no module 'features.99'"):
        FeatureTap(build_student(_config()), "features.99")
    for bad in ("fitnet+fitnet", "kd+tser", "kd+nope", ""):
        with pytest.raises(ConfigError):
            parse_method(bad)
    assert parse_method("tser+fitnet") == MethodParts("tser", ("fitnet",))
    assert parse_method("bkd") == MethodParts("ce", ("bkd",))


@pytest.mark.parametrize("method", ["fitnet", "bkd", "kd+fitnet", "tser+fitnet", "tser+bkd"])
def test_each_method_loss_decreases_and_heads_get_gradients(method):
    torch.manual_seed(0)
    config = _config()
    student, teacher = build_student(config), build_teacher(config).eval()
    s_tap = FeatureTap(student, "features.8")
    t_tap = FeatureTap(teacher, "features.8")
    x, y = torch.rand(32, 1, 8, 8) * 2, torch.randint(0, 10, (32,))
    with torch.no_grad():
        teacher_logits = teacher(x)
    teacher_features = t_tap.value[0].clone()
    functional.reset_net(student)
    student(x)
    loss_fn = Method(method, config, s_tap.value.mean(0).shape, teacher_features.shape)
    assert len(list(loss_fn.parameters())) > 0
    optimizer = torch.optim.Adam(list(student.parameters()) + list(loss_fn.parameters()), 1e-2)
    losses = []
    for step in range(25):
        torch.manual_seed(step % 2)  # the same two blur masks alternate (bkd)
        functional.reset_net(student)
        logits = student(x)
        loss = loss_fn(logits, teacher_logits, y, s_tap.value.mean(0), teacher_features).total
        optimizer.zero_grad()
        loss.backward()
        if step == 0:
            for name, param in loss_fn.named_parameters():
                assert param.grad is not None and param.grad.abs().sum() > 0, name
        optimizer.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3, losses


def test_feature_run_saves_only_student_and_teacher(tmp_path):
    import importlib
    import json

    import neurokd

    distill = importlib.import_module("neurokd.train.distillation")
    result = distill.distill(RunConfig(out=str(tmp_path), name="fit", method="tser+fitnet",
                                       epochs=1, teacher_epochs=1, width=8))
    [epoch] = json.loads((tmp_path / "fit" / "metrics.json").read_text())["history"]
    assert list(epoch["terms"]) == ["ce", "kl", "entropy", "fitnet"]  # the feature term last
    assert epoch["terms"]["fitnet"] > 0
    assert sum(epoch["terms"].values()) == pytest.approx(epoch["loss"], rel=1e-6)
    stored = torch.load(tmp_path / "fit" / "student.pt", weights_only=True)
    expected = set(build_student(stored["config"]).state_dict())
    assert set(stored["student"]) == expected  # no projection head among the student's weights
    assert set(stored) == {"format", "version", "config", "student", "teacher", "metrics",
                           "class_names"}
    state = torch.load(tmp_path / "fit" / "last.pt", weights_only=True)
    assert any(key.startswith("heads.fitnet.project") for key in state["extra"])
    loaded = neurokd.load(result.checkpoint)  # export/energy see a plain student
    assert isinstance(loaded.student, nn.Module)
