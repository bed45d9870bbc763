"""ONNX export: files checked here with onnx + onnxruntime against the PyTorch model itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

from neurokd.data import load_data
from neurokd.data.encoding import DirectEncoding
from neurokd.errors import NeuroKDError
from neurokd.exporters import export_onnx
from neurokd.models import build_teacher
from neurokd.student.sources import StudentSource

from helpers import make_student

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def digits_x() -> torch.Tensor:
    return load_data("digits").test.tensors[0][:150]  # real images; 150 keep the test quick


def eager(model: nn.Module, x: torch.Tensor) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Logits and the spikes of every neuron module, from spikingjelly itself."""
    spikes, hooks = {}, []
    for name, module in model.named_modules():
        if isinstance(module, neuron.BaseNode):
            hooks.append(module.register_forward_hook(
                lambda _m, _i, out, name=name: spikes.__setitem__(name, out.numpy())))
    functional.reset_net(model)
    with torch.no_grad():
        logits = model(x).numpy()
    functional.reset_net(model)
    for hook in hooks:
        hook.remove()
    return logits, spikes


def run_file(path: Path, x: torch.Tensor) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"input": x.numpy()}), strict=True))


def assert_standard_onnx(path: Path) -> onnx.ModelProto:
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    domains = {node.domain for node in model.graph.node}
    assert domains <= {"", "ai.onnx"}, domains
    assert not model.functions
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # dynamic batch axis
    return model


@pytest.mark.slow  # ONNX export / generation: seconds each, make test runs it
@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_student_round_trip_matches_spikingjelly(reset, digits_x, tmp_path):
    model, config = make_student(reset=reset)
    path = tmp_path / "student.onnx"
    # The default (dynamo) exporter for hard reset, the TorchScript one for soft: both covered.
    result = export_onnx(model, path, spike_outputs=True, input_shape=SHAPE, timesteps=3, random_inputs=True,
                         exporter="dynamo" if reset == "hard" else "torchscript")
    model_proto = assert_standard_onnx(path)
    ops = {node.op_type for node in model_proto.graph.node}
    assert {"GreaterOrEqual", "Where"} <= ops  # fire and reset written out as standard ops
    assert result.output_shape == (3, "batch", 10) and result.timesteps == 3
    assert result.agreement.spike_mismatches == 0 and result.agreement.spikes_checked > 0

    ref_logits, ref_spikes = eager(model, digits_x)
    assert list(ref_spikes) == ["features.2", "features.5", "features.8"]
    assert result.neuron_layers == ["features.0", "features.3", "features.6"]
    for rows in (slice(0, 1), slice(0, 100)):  # two batch sizes through the same file
        got = run_file(path, digits_x[rows])
        assert got["logits"].shape == (3, rows.stop, 10)
        np.testing.assert_allclose(got["logits"], ref_logits[:, rows], rtol=0, atol=1e-5)
        assert np.array_equal(got["logits"].mean(0).argmax(-1),
                              ref_logits[:, rows].mean(0).argmax(-1))
        for name, spikes in ref_spikes.items():  # outputs named by the layer: its conv
            output = f"spikes.features.{int(name.split('.')[1]) - 2}"
            assert np.array_equal(got[output], spikes[:, rows]), name
    rates = [float(s.mean()) for s in ref_spikes.values()]
    assert all(0.01 < r < 0.9 for r in rates), rates  # the check is not vacuous


def test_residual_student_torchscript_exporter_logits_only(digits_x, tmp_path):
    model, _ = make_student(arch="resnet", width=4, timesteps=2, seed=2)
    path = tmp_path / "resnet.onnx"
    result = export_onnx(model, path, input_shape=SHAPE, timesteps=2, exporter="torchscript",
                         random_inputs=True)
    assert result.exporter.startswith("torch.onnx TorchScript")  # the fast, deprecated path
    assert_standard_onnx(path)
    assert result.output_names == ["logits"] and len(result.neuron_layers) == 7
    got = run_file(path, digits_x)
    assert list(got) == ["logits"]
    ref_logits, ref_spikes = eager(model, digits_x)
    np.testing.assert_allclose(got["logits"], ref_logits, rtol=0, atol=1e-5)
    assert all(s.mean() > 0.005 for s in ref_spikes.values())


@pytest.mark.slow  # ONNX export / generation: seconds each, make test runs it
def test_user_model_through_direct_encoding(tmp_path, digits_x):
    """A user's multi-step model (SeqToANN container, IF neurons) through DirectEncoding."""
    torch.manual_seed(3)
    body = nn.Sequential(
        layer.SeqToANNContainer(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6)),
        neuron.IFNode(v_threshold=0.5, step_mode="m"),
        layer.AvgPool2d(2, step_mode="m"), layer.Flatten(step_mode="m"),
        layer.Linear(6 * 4 * 4, 5, step_mode="m"))
    source = StudentSource(DirectEncoding(body, SHAPE, 4).eval(), SHAPE, 4, "user")
    path = tmp_path / "user.onnx"
    result = export_onnx(source, path, random_inputs=True, exporter="dynamo")
    assert result.exporter.startswith("torch.onnx dynamo")
    assert result.verified_on.endswith("random N(0,1) inputs (seed 0)")  # no data set known
    assert_standard_onnx(path)
    ref_logits, ref_spikes = eager(source.model, digits_x)
    np.testing.assert_allclose(run_file(path, digits_x)["logits"], ref_logits, rtol=0, atol=1e-5)
    assert 0.01 < ref_spikes["model.1"].mean() < 0.9


@pytest.mark.slow  # ONNX export / generation: seconds each, make test runs it
def test_teacher_export(tmp_path, digits_x):
    student, config = make_student()
    torch.manual_seed(2)
    teacher = build_teacher(config | {"teacher_width": 8}).eval()
    source = StudentSource(student, SHAPE, 3, "run", config, teacher)
    path = tmp_path / "teacher.onnx"
    result = export_onnx(source, path, teacher=True)
    assert_standard_onnx(path)
    assert result.model == "teacher" and result.output_shape == ("batch", 10)
    with torch.no_grad():
        expected = teacher(digits_x).numpy()
    got = run_file(path, digits_x)["logits"]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * max(1, np.abs(expected).max()))
    assert np.array_equal(got.argmax(-1), expected.argmax(-1))


def test_no_teacher_is_an_error(tmp_path):
    model, _ = make_student()
    with pytest.raises(NeuroKDError, match="no teacher"):
        export_onnx(model, tmp_path / "t.onnx", teacher=True, input_shape=SHAPE, timesteps=3,
                    random_inputs=True)
    assert list(tmp_path.iterdir()) == []


class Clamp(nn.Module):
    def forward(self, x):
        return x.clamp(0, 1)


def test_unsupported_layers_are_named_and_nothing_is_written(tmp_path):
    body = nn.Sequential(
        layer.Conv2d(1, 4, 3, padding=1, step_mode="m"),
        neuron.QIFNode(step_mode="m"), Clamp(),
        layer.Flatten(step_mode="m"), layer.Linear(4 * 8 * 8, 3, step_mode="m"))
    source = StudentSource(DirectEncoding(body, SHAPE, 2).eval(), SHAPE, 2, "user")
    target = tmp_path / "out" / "bad.onnx"
    with pytest.raises(NeuroKDError) as info:
        export_onnx(source, target, random_inputs=True)
    message = str(info.value)
    assert "1 (QIFNode: a neuron model without an exporter)" in message
    assert "2 (Clamp: a layer type no exporter knows)" in message
    assert not target.exists() and not any(tmp_path.rglob("*.tmp"))


@pytest.mark.slow  # a dynamo export (~10 s)
def test_auto_keeps_torchscript_where_it_passes_the_check_and_falls_back_where_not(
        trained_run, tmp_path):
    """The student: TorchScript's file passes the full check (identical spikes, logits within
    1e-5 at batch 64 and 1) and is kept. The teacher: TorchScript bakes the example's batch
    into a reshape, ONNX Runtime refuses batch 1, and the dynamo exporter writes it."""
    student = export_onnx(trained_run / "student.pt", tmp_path / "s.onnx", max_samples=64)
    assert student.exporter == "torch.onnx TorchScript (checked)"
    assert student.agreement.spike_mismatches == 0
    teacher = export_onnx(trained_run / "student.pt", tmp_path / "t.onnx", teacher=True,
                          max_samples=64)
    assert teacher.exporter.startswith("torch.onnx dynamo") and "after TorchScript" in \
        teacher.exporter
    assert teacher.agreement.max_abs_logit_error <= 1e-5
