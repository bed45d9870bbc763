"""The stepwise ONNX export (issue 25, item 4): one timestep per call, the neurons' state in and
out. Stepped T times in ONNX Runtime from zero states it must give the unrolled PyTorch
student's logits (<= 1e-5) and identical spikes: a direct, a rate-encoded and an event
student, at batch 1 and 7. The stepping loop below is written here, apart from the exporter's
own check, and the reference is the eager spikingjelly student."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, neuron
from test_events_export import _checkpoint

from neurokd import load
from neurokd.data import load_data, make_loader
from neurokd.exporters import export_onnx

from helpers import assert_one_line_error, run_cli

KINDS = {  # name -> (checkpoint settings, per-sample input shape)
    "direct": ({"dataset": "digits"}, (1, 8, 8)),
    "rate": ({"dataset": "digits", "encoding": "rate"}, (1, 8, 8)),
    "event": ({"dataset": "digits-dvs"}, (2, 20, 20)),
}


@pytest.fixture(scope="module", params=list(KINDS))
def stepwise(request, tmp_path_factory):
    settings, shape = KINDS[request.param]
    folder = tmp_path_factory.mktemp(f"step-{request.param}")
    checkpoint = _checkpoint(folder, request.param, shape, **settings)
    path = folder / "student.step.onnx"
    result = export_onnx(checkpoint, path, stepwise=True, spike_outputs=True, max_samples=16,
                         exporter="torchscript")
    return request.param, checkpoint, path, result


def _inputs(kind: str, count: int) -> torch.Tensor:
    """Test samples as the student takes them: [N, 1, 8, 8] or [T, N, C, H, W] spikes."""
    if kind == "event":
        bundle = load_data("digits-dvs", timesteps=4)
    else:
        bundle = load_data("digits", encoding="rate" if kind == "rate" else "direct",
                           timesteps=4)
    return next(iter(make_loader(bundle.test, count)))[0]


def _eager(student, x):
    """Logits [T, B, K] and each neuron layer's spikes [T, B, ...] of the PyTorch student."""
    spikes = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: spikes.append(out.numpy()))
             for m in student.modules() if isinstance(m, neuron.BaseNode)]
    functional.reset_net(student)
    with torch.no_grad():
        logits = student(x).numpy()
    for hook in hooks:
        hook.remove()
    functional.reset_net(student)
    return logits, spikes


def _stream(path, x: np.ndarray, timesteps: int, static: bool):
    """Step the file T times from zero states, feeding next.* back as state.*."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert names[0] == "x"
    states = {i.name: np.zeros([x.shape[0 if static else 1], *i.shape[1:]], np.float32)
              for i in session.get_inputs()[1:]}
    outputs = [o.name for o in session.get_outputs()]
    logits, spikes = [], []
    for t in range(timesteps):
        got = dict(zip(outputs, session.run(None, {"x": x if static else x[t], **states}),
                       strict=True))
        logits.append(got["logits"])
        spikes.append([got[n] for n in outputs if n.startswith("spikes.")])
        states = {name: got["next." + name.removeprefix("state.")] for name in states}
    return np.stack(logits), [np.stack(layer) for layer in zip(*spikes, strict=True)]


@pytest.mark.parametrize("batch", [1, 7])
def test_stepping_the_file_t_times_is_the_unrolled_student(stepwise, batch):
    kind, checkpoint, path, result = stepwise
    student = load(checkpoint).student
    x = _inputs(kind, batch)
    static = kind == "direct"
    assert x.dim() == (4 if static else 5)
    ref_logits, ref_spikes = _eager(student, x)
    logits, spikes = _stream(path, x.numpy(), 4, static)
    assert logits.shape == ref_logits.shape == (4, batch, 10)
    assert np.abs(logits - ref_logits).max() <= 1e-5 * max(1.0, np.abs(ref_logits).max())
    assert len(spikes) == len(ref_spikes) > 0
    for got, ref in zip(spikes, ref_spikes, strict=True):
        assert np.array_equal(got, ref.reshape(got.shape))
    assert sum(float(s.sum()) for s in ref_spikes) > 0  # not a silent, hollow comparison


def test_the_file_declares_its_states_and_dynamic_batch(stepwise):
    import onnx

    kind, _, path, result = stepwise
    model = onnx.load(str(path))
    inputs, outputs = model.graph.input, model.graph.output
    states = [i.name for i in inputs[1:]]
    assert states and all(n.startswith("state.") for n in states)
    assert [o.name for o in outputs[1:1 + len(states)]] == \
        ["next." + n.removeprefix("state.") for n in states]
    for value in (*inputs, *outputs):
        assert value.type.tensor_type.shape.dim[0].dim_param == "batch"
    props = {p.key: p.value for p in model.metadata_props}
    assert props["neurokd.stepwise"] == "1" and props["neurokd.timesteps"] == "4"
    assert set(json.loads(props["neurokd.states"])) == \
        {n.removeprefix("state.") for n in states}
    x_dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim[1:]]
    assert x_dims == list(KINDS[kind][1])  # one timestep: no T axis, also for spikes


def test_stepwise_with_another_target_is_refused(trained_run, tmp_path, capsys):
    out = tmp_path / "s.nir"
    outcome = run_cli(capsys, "export", "--target", "nir", "--stepwise",
                      str(trained_run / "student.pt"), "-o", str(out))
    assert_one_line_error(outcome, 2, "--stepwise")
    assert not out.exists()


def test_simulate_refuses_a_stepwise_file_in_one_line(stepwise, tmp_path, capsys):
    _, _, path, _ = stepwise
    out = tmp_path / "sim.json"
    outcome = run_cli(capsys, "simulate", str(path), "--backend", "onnx", "--json", str(out))
    assert_one_line_error(outcome, 2, "stepwise")
    assert not out.exists()
