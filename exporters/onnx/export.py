"""ONNX export of a spiking student (unrolled over its T timesteps) or of its ANN teacher.

spikingjelly 2.0 runs LIF neurons through a custom op (``sj_lif::forward``) that torch.onnx
cannot translate, so the student is exported through :class:`~neurokd.exporters.graph.
GraphExecutor`: the same layers and weights, with the neuron loop written out in plain torch
ops (charge: Add/Sub/Div; fire: GreaterOrEqual + Cast; reset: Where). The file has one input
``input`` ``[batch, *input_shape]`` (static data, direct encoding inside the file) or
``[T, batch, C, H, W]`` (event frames, rate-coded spikes: the spikes themselves), and the output
``logits`` ``[T, batch, K]`` (teacher: ``[batch, K]``), with a dynamic batch axis, and optionally
``spikes.<layer>`` ``[T, batch, ...]`` per neuron layer, named by its layer
(``neurokd.student.layers``: the conv/linear before it). Exporter: the torch.export-based ``torch.onnx.export(dynamo=True)`` (the
default since torch 2.9; it gives plain ``ai.onnx`` ops and fuses BatchNorm into Conv), with
the deprecated TorchScript exporter as a fallback for models torch.export cannot capture.

Nothing is written until the serialized model passes ``onnx.checker`` (full check), uses only
the standard domain, and ONNX Runtime reproduces the PyTorch model on the verification inputs:
identical spikes, logits within 1e-5 (times max(1, |logit|)), identical predictions.
"""

from __future__ import annotations

import io
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

from neurokd.data.encoding import batch_axis
from neurokd.errors import NeuroKDError
from neurokd.files.safe_io import atomic_path
from neurokd.student.inputs import source_inputs
from neurokd.student.sources import StudentSource, as_source
from neurokd.text import describe, first_line

from ..base import Exporter
from ..graph import GraphExecutor, StudentGraph, trace_student
from ..verify import chunks, compare, eager_run, private_copy, take
from .common import (  # noqa: F401 - OnnxExportResult and the constants: this module's face too
    EXPORTER_ORDER,
    LOGIT_TOLERANCE,
    ONNX_KINDS,
    STANDARD_DOMAINS,
    OnnxExportResult,
    check_standard,
    describe_model,
    keep_outputs,
    onnx_limits,
    shape_of,
)


class _Unrolled(nn.Module):
    """``[B, ...] -> (logits [T, B, K], *spikes)``: tuples export as separate outputs."""

    def __init__(self, graph: StudentGraph):
        super().__init__()
        self.executor = GraphExecutor(graph)

    def forward(self, x: torch.Tensor):
        logits, spikes = self.executor(x)
        return (logits, *spikes)


def export_onnx(source: StudentSource | nn.Module | str | Path, path: str | Path,
                teacher: bool = False, spike_outputs: bool = False, max_samples: int = 512,
                dataset: str | None = None, data_dir: str | None = None,
                random_inputs: bool = False, batch_size_check: int = 64,
                input_shape: tuple[int, ...] | None = None, timesteps: int | None = None,
                exporter: str = "auto", stepwise: bool = False) -> OnnxExportResult:
    """Export, verify with ONNX Runtime, then write ``path`` atomically.

    ``source``: a StudentSource, a checkpoint path, or a module (with ``input_shape`` and
    ``timesteps``). The check runs on ``max_samples`` inputs chosen by
    ``neurokd.student.inputs.source_inputs`` (``dataset``, ``data_dir``, ``random_inputs``).
    ``batch_size_check``: chunk size of the verification run (which also runs batch 1).
    ``spike_outputs`` keeps the per-layer spike outputs in the written file.
    ``exporter``: ``"auto"`` tries torch's TorchScript exporter first (~0.5 s for the demo
    student, where the dynamo exporter takes ~11 s) and keeps its file only if it passes the
    full check below; otherwise (it cannot capture the model, or it baked the example's batch
    size into a reshape, which the batch-1 and batch-64 runs of the check catch) the dynamo
    exporter writes it. ``"torchscript"`` or ``"dynamo"`` use that one alone.
    ``stepwise``: a one-timestep graph with the neurons' state as inputs and outputs instead
    of the unrolled one (``stepwise.py``; streaming, early exit).

    >>> export_onnx("runs/demo/student.pt", "runs/demo/student.onnx").exporter
    'torch.onnx TorchScript (checked)'
    """
    if exporter not in EXPORTER_ORDER:
        raise NeuroKDError(f"unknown ONNX exporter {exporter!r}; choose from "
                           f"{', '.join(EXPORTER_ORDER)}")
    source = as_source(source, input_shape, timesteps)
    if stepwise:
        if teacher:
            raise NeuroKDError("--stepwise exports the spiking student (an ANN teacher has no "
                               "timesteps to step through)")
        from .stepwise import export_stepwise

        return export_stepwise(source, path, spike_outputs, max_samples, dataset, data_dir,
                               random_inputs, batch_size_check, exporter)
    if teacher:
        if source.teacher is None:
            raise NeuroKDError(f"{source.label} has no teacher to export")
        model = private_copy(source.teacher)
        wrapper, neuron_records, labels, layers = model, [], [], None
    else:
        model = private_copy(source.model)
        graph = trace_student(model, source.input_shape, source.timesteps)
        graph.refuse(onnx_limits(graph), "ONNX")
        wrapper, neuron_records = _Unrolled(graph).eval(), graph.neurons
        labels, layers = graph.spike_labels(), graph.layer_names
    inputs, _, described = source_inputs(source, "test", max_samples, dataset, data_dir,
                                         random_inputs)  # after the cheap checks
    neurons = labels  # each neuron record's spikes under its layer's name
    names = ["logits"] + [f"spikes.{name}" for name in neurons]
    axis = batch_axis(inputs, source.input_shape)  # 1: [T, batch, C, H, W] spikes or frames
    example = take(inputs, slice(0, 2), axis)
    reference = eager_run(model, [r.module for r in neuron_records])
    failures = []
    for use_dynamo in EXPORTER_ORDER[exporter]:
        try:
            proto, label = _to_onnx(wrapper, example, names, use_dynamo, axis)
            _declare_output_shapes(proto, wrapper, example, batch_axis=0 if teacher else 1)
            describe_model(proto, source, teacher, axis == 1, layers)
            check_standard(proto)
            agreement = compare(reference, _ort_run(proto), inputs, batch_size_check, neurons,
                                axis)
            agreement.check("ONNX", LOGIT_TOLERANCE, spikes_exact=True)
            break
        except NeuroKDError as exc:
            failures.append(f"{'dynamo' if use_dynamo else 'TorchScript'}: {first_line(exc)}")
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime refusing the file (a baked
            # batch size meets the batch-1 run): the next exporter, or the error below
            failures.append(f"{'dynamo' if use_dynamo else 'TorchScript'}: {describe(exc)}")
    else:
        raise NeuroKDError(f"no ONNX export of {source.label} passes the check ("
                           + "; ".join(failures) + "); nothing written")
    exporter = label if len(EXPORTER_ORDER[exporter]) == 1 or not failures else \
        f"{label} (after TorchScript: {failures[0].split(': ', 1)[1][:80]})"
    if not spike_outputs and len(names) > 1:
        full, proto, names = proto, keep_outputs(proto, ["logits"]), ["logits"]
        check_standard(proto)
        _same_logits(full, proto, inputs, batch_size_check, axis)
    data = proto.SerializeToString()
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return OnnxExportResult(
        Path(path), len(data), described, agreement, "teacher" if teacher else "student",
        exporter, max(o.version for o in proto.opset_import if o.domain in STANDARD_DOMAINS),
        "input", shape_of(proto.graph.input[0]), names,
        shape_of(proto.graph.output[0]), None if teacher else source.timesteps,
        dict(sorted(Counter(n.op_type for n in proto.graph.node).items())), neurons)


def _to_onnx(module: nn.Module, example: torch.Tensor, names: list[str], dynamo: bool,
             input_batch_axis: int = 0):
    """ModelProto with a dynamic batch axis (``input_batch_axis`` of the input: 1 for
    ``[T, batch, ...]``); dynamo exporter first, TorchScript as fallback."""
    import onnx

    first = "not tried"
    if dynamo:
        try:
            batch = torch.export.Dim("batch", min=1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                program = torch.onnx.export(module, (example,), dynamo=True, verbose=False,
                                            input_names=["input"], output_names=names,
                                            dynamic_shapes=({input_batch_axis: batch},))
            return program.model_proto, f"torch.onnx dynamo (torch {torch.__version__})"
        except Exception as exc:  # noqa: BLE001 - any capture failure: try the old path
            first = describe(exc)
    buffer = io.BytesIO()
    batch_axis = 1 if isinstance(module, _Unrolled) else 0  # students: [T, batch, ...]
    axes = {"input": {input_batch_axis: "batch"}} | {name: {batch_axis: "batch"}
                                                     for name in names}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example,), buffer, dynamo=False, input_names=["input"],
                              output_names=names, dynamic_axes=axes)
    except Exception as exc:  # noqa: BLE001
        raise NeuroKDError(f"torch.onnx cannot export the model (dynamo: {first}; "
                           f"TorchScript: {describe(exc)})") from None
    label = "fallback" if dynamo else "checked"
    return onnx.load_from_string(buffer.getvalue()), f"torch.onnx TorchScript ({label})"


def _declare_output_shapes(proto, module: nn.Module, example: torch.Tensor,
                           batch_axis: int) -> None:
    """Static sizes for every output axis but the batch (the TorchScript exporter leaves
    names such as ``Reshapelogits_dim_0`` where T and K are known)."""
    with torch.no_grad():
        outputs = module(example)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    for value_info, tensor in zip(proto.graph.output, outputs, strict=True):
        shape = value_info.type.tensor_type.shape
        del shape.dim[:]
        for axis, size in enumerate(tensor.shape):
            dim = shape.dim.add()
            if axis == batch_axis:
                dim.dim_param = "batch"
            else:
                dim.dim_value = int(size)


def _ort_run(proto):
    """ONNX Runtime on the serialized model, default session options (what users get)."""
    import onnxruntime as ort

    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])

    def run(x: torch.Tensor) -> tuple[np.ndarray, list[np.ndarray]]:
        try:
            outputs = session.run(None, {"input": x.numpy()})
        except Exception as exc:  # noqa: BLE001 - ORT raises its own types for a bad graph
            raise NeuroKDError(f"the exported ONNX model fails in ONNX Runtime at batch "
                               f"{len(x)} ({describe(exc)}); nothing written") from None
        return outputs[0], list(outputs[1:])

    return run


def _same_logits(full, stripped, inputs: torch.Tensor, batch_size: int, axis: int) -> None:
    """Dropping the spike outputs must not change a single logit."""
    full_run, stripped_run = _ort_run(full), _ort_run(stripped)
    for part in chunks(inputs.shape[axis], batch_size):
        x = take(inputs, part, axis)
        if not np.array_equal(full_run(x)[0], stripped_run(x)[0]):
            raise NeuroKDError("ONNX export: removing the spike outputs changed the logits; "
                               "use spike_outputs=True")


EXPORTER = Exporter("onnx", ".onnx", "the student unrolled over T (or the ANN teacher), checked "
                    "in ONNX Runtime", export_onnx, onnx_limits,
                    ("teacher", "spike_outputs", "stepwise"),
                    stems=("student", "student.spikes", "teacher", "student.step"))
