"""What the two ONNX writers share (the unrolled graph, ``export.py``; the one-timestep graph,
``stepwise.py``): the result record, what ONNX takes, the model properties a bare file carries,
the standard-ops check and the output pruning. Kept apart so each writer imports it and
neither imports the other's module (the unrolled writer hands ``stepwise=True`` over lazily).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from neurokd.data.encoding import ENCODINGS
from neurokd.errors import NeuroKDError
from neurokd.student.inputs import recorded_settings
from neurokd.student.sources import StudentSource
from neurokd.text import describe

from ..base import ExportResult
from ..graph import StudentGraph

ONNX_KINDS = ("conv", "dense", "batchnorm", "flatten", "avgpool", "maxpool", "neuron", "add")

STANDARD_DOMAINS = ("", "ai.onnx")

LOGIT_TOLERANCE = 1e-5

@dataclass
class OnnxExportResult(ExportResult):
    model: str                       # "student" or "teacher"
    exporter: str                    # which torch.onnx path produced the file
    opset: int
    input_name: str
    input_shape: tuple[int | str, ...]     # "batch" marks the dynamic axis
    output_names: list[str]
    output_shape: tuple[int | str, ...]    # logits
    timesteps: int | None            # None for the teacher
    ops: dict[str, int]              # op type -> count, all in the standard domain
    neuron_layers: list[str] = field(default_factory=list)

    def summary_lines(self) -> list[str]:
        shape = ",".join(str(d) for d in self.input_shape)
        out = ",".join(str(d) for d in self.output_shape)
        steps = f", T={self.timesteps}" if self.timesteps else ""
        return [f"wrote {self.path} ({self.file_bytes / 1024:.0f} kB): {self.model}{steps}, "
                f"input [{shape}] -> logits [{out}]",
                f"  {self.exporter}, opset {self.opset}, standard ops only: "
                + " ".join(sorted(self.ops)),
                self.agreement_line("onnxruntime")]

def onnx_limits(graph: StudentGraph) -> list[str]:
    """Layers ONNX export cannot take (the neuron loop is written out, so nearly anything)."""
    return graph.offending(ONNX_KINDS)

# Which torch.onnx exporters ``exporter=`` tries, in order (False: TorchScript, True: dynamo).
EXPORTER_ORDER = {"auto": (False, True), "torchscript": (False,), "dynamo": (True,)}

def describe_model(proto, source: StudentSource, teacher: bool, time_major: bool,
                   layers: list[str] | None = None) -> None:
    """Model properties, so a user of the bare file knows how to read its inputs and outputs
    (and ``neurokd simulate --backend onnx`` finds the data set, as with netx files).
    ``layers``: a student's conv/linear layers in order (``neurokd.layer_names``: the ONNX
    graph keeps no module paths)."""

    import onnx

    props = {"producer": "neurokd", "neurokd.model": "teacher" if teacher else "student",
             "neurokd.source": source.label, "neurokd.input_shape": str(source.input_shape)}
    settings = recorded_settings(source.config)
    if settings.get("dataset"):
        props["neurokd.dataset"] = settings["dataset"]
        props["neurokd.image_size"] = str(settings.get("image_size", 32))
        if settings.get("data_dir"):
            props["neurokd.data_dir"] = str(settings["data_dir"])
        props["neurokd.data"] = json.dumps(settings)
    encoding = (source.config or {}).get("encoding")
    if time_major:
        what = (f"rate: {ENCODINGS['rate'].summary}" if encoding == "rate" else
                "events: [T, batch, 2, H, W] event frames, channel 0 OFF and 1 ON")
        props["neurokd.input"] = f"[T, batch, C, H, W] spikes, T={source.timesteps}; {what}"
    if not teacher:
        props |= {"neurokd.timesteps": str(source.timesteps),
                  "neurokd.logits": "[T, batch, classes], one row per timestep; the prediction "
                                    "is the argmax of the mean over T",
                  "neurokd.encoding": "spikes: the input already has its time axis" if
                  time_major else "direct: the static input is repeated at every timestep"}
        if source.exit:  # the run's early exit: rule, threshold, what it gave (docs/anytime.md)
            props["neurokd.exit"] = json.dumps(source.exit)
        if layers is not None:
            props["neurokd.layer_names"] = json.dumps(list(layers))
    onnx.helper.set_model_props(proto, props)

def check_standard(proto) -> None:
    """Full checker pass, and no op outside the standard domain (no custom ops, no functions)."""
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise NeuroKDError(f"exported ONNX model fails onnx.checker: {describe(exc)}") from None
    custom = sorted({f"{n.domain}::{n.op_type}" for n in proto.graph.node
                     if n.domain not in STANDARD_DOMAINS}
                    | {f"{f.domain}::{f.name} (function)" for f in proto.functions})
    if custom:
        raise NeuroKDError(f"exported ONNX model uses non-standard ops: {', '.join(custom)}")

def keep_outputs(proto, names: list[str]):
    """The model with only the named outputs, minus the nodes nothing needs any more."""
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    graph = model.graph
    kept = [o for o in graph.output if o.name in names]
    del graph.output[:]
    graph.output.extend(kept)
    needed = set(names)
    live = []
    for node in reversed(graph.node):
        if any(out in needed for out in node.output):
            live.append(node)
            needed.update(i for i in node.input if i)
    del graph.node[:]
    graph.node.extend(reversed(live))
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    infos = [v for v in graph.value_info if v.name in needed]
    del graph.value_info[:]
    graph.value_info.extend(infos)
    return model

def shape_of(value_info) -> tuple[int | str, ...]:
    dims = value_info.type.tensor_type.shape.dim
    return tuple(d.dim_param or d.dim_value for d in dims)
