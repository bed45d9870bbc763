"""Streaming ONNX export (``neurokd export --target onnx --stepwise``): one timestep per call.

The file computes one timestep of the student with the neurons' state as plain tensors:

* inputs: ``x`` — the timestep's input, ``[batch, *input_shape]``: the static sample for direct
  encoding (the same ``x`` at every step), one frame of spikes for event data and for rate
  encoding (the caller draws the step's Bernoulli spikes: the file holds no random number
  generator, and the spikes a run saw are then exactly the ones given) — then one input per
  state tensor, ``state.<layer>.v`` (membrane minus its resting value) and, for CUBA-LIF,
  ``state.<layer>.i`` (synaptic current), each ``[batch, *layer output shape]``;
* outputs: ``logits`` ``[batch, K]`` of that timestep, then ``next.<...>`` the new states in
  the same order (and ``spikes.<layer>`` with ``--spikes``).

Every axis 0 is the dynamic batch. The states start as zeros of the declared shapes; feed each
``next.*`` back as the matching ``state.*``. The prediction after t steps is the argmax of the
mean of the first t logits rows, so a caller can stop a sample at its exit step
(``neurokd.exit`` in the metadata; examples/stream_exit.py).

Nothing is written until ONNX Runtime, stepping the file T times from zero states, gives the
unrolled student's logits (within 1e-5, times max(1, |logit|)) and identical spikes on the check
inputs, at batch 1 and ``batch_size_check``.
"""

from __future__ import annotations

import io
import json
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from neurokd.data.encoding import batch_axis
from neurokd.errors import NeuroKDError
from neurokd.files.safe_io import atomic_path
from neurokd.student.inputs import source_inputs
from neurokd.student.sources import StudentSource
from neurokd.text import describe, first_line

from ..graph import StepExecutor, trace_student
from ..verify import compare, eager_run, private_copy
from .common import (
    EXPORTER_ORDER,
    LOGIT_TOLERANCE,
    STANDARD_DOMAINS,
    OnnxExportResult,
    check_standard,
    describe_model,
    keep_outputs,
    onnx_limits,
    shape_of,
)


def export_stepwise(source: StudentSource, path: str | Path, spike_outputs: bool = False,
                    max_samples: int = 512, dataset: str | None = None,
                    data_dir: str | None = None, random_inputs: bool = False,
                    batch_size_check: int = 64, exporter: str = "auto") -> OnnxExportResult:
    """Export ``source``'s student as a one-timestep graph (module doc), check it, write it.

        >>> # export_stepwise(load_source("runs/demo/student.pt"), "student.step.onnx")
    """
    model = private_copy(source.model)
    graph = trace_student(model, source.input_shape, source.timesteps)
    graph.refuse(onnx_limits(graph), "ONNX")
    step = StepExecutor(graph).eval()
    neurons = graph.spike_labels()  # each neuron record's spikes under its layer's name
    states = step.state_names()
    input_names = ["x", *(f"state.{n}" for n in states)]
    output_names = ["logits", *(f"next.{n}" for n in states),
                    *(f"spikes.{n}" for n in neurons)]
    inputs, _, described = source_inputs(source, "test", max_samples, dataset, data_dir,
                                         random_inputs)
    axis = batch_axis(inputs, source.input_shape)  # 1: [T, N, ...] frames or spikes
    frame = inputs[:2] if axis == 0 else inputs[0, :2]
    example = (frame, *step.initial_states(len(frame)))
    reference = eager_run(model, [r.module for r in graph.neurons])
    failures = []
    for use_dynamo in EXPORTER_ORDER[exporter]:
        try:
            proto, label = _to_onnx(step, example, input_names, output_names, use_dynamo)
            _declare_shapes(proto, step, example)
            describe_model(proto, source, False, axis == 1, graph.layer_names)
            _describe_stepwise(proto, source, states, step.state_shapes(), axis == 1)
            check_standard(proto)
            agreement = compare(reference, stepper(proto.SerializeToString(), source.timesteps),
                                inputs, batch_size_check, neurons, axis)
            agreement.check("stepwise ONNX", LOGIT_TOLERANCE, spikes_exact=True)
            break
        except NeuroKDError as exc:
            failures.append(f"{'dynamo' if use_dynamo else 'TorchScript'}: {first_line(exc)}")
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime refusing the file: next exporter
            failures.append(f"{'dynamo' if use_dynamo else 'TorchScript'}: {describe(exc)}")
    else:
        raise NeuroKDError(f"no stepwise ONNX export of {source.label} passes the check ("
                           + "; ".join(failures) + "); nothing written")
    names = output_names
    if not spike_outputs and neurons:
        names = output_names[:1 + len(states)]
        full, proto = proto, keep_outputs(proto, names)
        check_standard(proto)
        _same_steps(full, proto, inputs, source.timesteps, axis)
    data = proto.SerializeToString()
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return OnnxExportResult(
        Path(path), len(data), described, agreement, "student (one timestep per call)", label,
        max(o.version for o in proto.opset_import if o.domain in STANDARD_DOMAINS),
        "x", shape_of(proto.graph.input[0]), names, shape_of(proto.graph.output[0]),
        source.timesteps, dict(sorted(Counter(n.op_type for n in proto.graph.node).items())),
        neurons)


def _to_onnx(step: StepExecutor, example: tuple, input_names: list[str],
             output_names: list[str], dynamo: bool):
    """ModelProto of one step, axis 0 of every input and output the dynamic batch."""
    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            batch = torch.export.Dim("batch", min=1)
            program = torch.onnx.export(step, example, dynamo=True, verbose=False,
                                        input_names=input_names, output_names=output_names,
                                        dynamic_shapes=tuple({0: batch} for _ in example))
            return program.model_proto, f"torch.onnx dynamo (torch {torch.__version__})"
        buffer = io.BytesIO()
        axes = {name: {0: "batch"} for name in (*input_names, *output_names)}
        torch.onnx.export(step, example, buffer, dynamo=False, input_names=input_names,
                          output_names=output_names, dynamic_axes=axes)
    return onnx.load_from_string(buffer.getvalue()), "torch.onnx TorchScript (checked)"


def _declare_shapes(proto, step: StepExecutor, example: tuple) -> None:
    """Every input and output: ``batch`` then its static per-sample sizes."""
    with torch.no_grad():
        outputs = step(*example)
    for infos, tensors in ((proto.graph.input, example), (proto.graph.output, outputs)):
        for info, tensor in zip(infos, tensors, strict=True):
            shape = info.type.tensor_type.shape
            del shape.dim[:]
            for axis, size in enumerate(tensor.shape):
                dim = shape.dim.add()
                if axis == 0:
                    dim.dim_param = "batch"
                else:
                    dim.dim_value = int(size)


def _describe_stepwise(proto, source: StudentSource, states: list[str],
                       shapes: list[tuple[int, ...]], spikes_in: bool) -> None:
    """The metadata a streaming caller reads: what ``x`` is, the states, how to step."""
    import onnx

    props = {p.key: p.value for p in proto.metadata_props}
    props |= {
        "neurokd.stepwise": "1",
        "neurokd.input": ("x: one timestep's frame of spikes [batch, C, H, W] (rate encoding: "
                          "draw that step's Bernoulli spikes yourself)" if spikes_in else
                          "x: the static sample [batch, ...], the same at every timestep "
                          "(direct encoding)"),
        "neurokd.logits": "[batch, classes] of this timestep; the prediction after t steps is "
                          "the argmax of the mean of the first t rows",
        "neurokd.states": json.dumps({name: list(shape) for name, shape in
                                      zip(states, shapes, strict=True)}),
        "neurokd.stepping": "start every state.* at zeros of its shape; after each call feed "
                            "next.* back as state.*; run at most neurokd.timesteps steps",
    }
    onnx.helper.set_model_props(proto, props)


def stepper(data: bytes, timesteps: int):
    """A ``verify.RunFn`` stepping a serialized stepwise model T times from zero states:
    ``x`` ``[B, ...]`` or ``[T, B, ...]`` -> (logits ``[T, B, K]``, spikes ``[T, B, ...]``)."""
    import onnxruntime as ort

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    state_inputs = [i for i in session.get_inputs()[1:]]
    spikes_from = 1 + len(state_inputs)

    def run(x: torch.Tensor) -> tuple[np.ndarray, list[np.ndarray]]:
        frames = x.numpy()
        static = frames.ndim == len(session.get_inputs()[0].shape)
        batch = frames.shape[0 if static else 1]
        states = [np.zeros((batch, *i.shape[1:]), dtype=np.float32) for i in state_inputs]
        logits, spikes = [], []
        for t in range(timesteps):
            feed = {"x": frames if static else frames[t]}
            feed |= {i.name: s for i, s in zip(state_inputs, states, strict=True)}
            try:
                outputs = session.run(None, feed)
            except Exception as exc:  # noqa: BLE001 - ORT raises its own types
                raise NeuroKDError(f"the stepwise ONNX model fails in ONNX Runtime at batch "
                                   f"{batch}, step {t + 1} ({describe(exc)})") from None
            logits.append(outputs[0])
            states = outputs[1:spikes_from]
            spikes.append(outputs[spikes_from:])
        return np.stack(logits), [np.stack(layer) for layer in zip(*spikes, strict=True)] \
            if spikes and spikes[0] else []

    return run


def _same_steps(full, stripped, inputs: torch.Tensor, timesteps: int, axis: int) -> None:
    """Dropping the spike outputs must not change a single logit."""
    x = inputs[:8] if axis == 0 else inputs[:, :8]
    got = stepper(stripped.SerializeToString(), timesteps)(x)[0]
    if not np.array_equal(stepper(full.SerializeToString(), timesteps)(x)[0], got):
        raise NeuroKDError("stepwise ONNX export: removing the spike outputs changed the logits")
