"""``neurokd simulate --backend onnx``: an ONNX student export on a test split, in ONNX Runtime.

Gives the export's accuracy and the same per-layer event counts as the Lava backend (the
spike-count file of ``neurokd.energy.spike_counts``), read from the ``spikes.<layer>``
outputs that ``neurokd export --target onnx --spikes`` adds. The layers are the file's Conv /
Gemm / MatMul nodes in order, each followed by the neuron layer whose spikes come next (a chain,
as on Loihi, checked shape by shape before any sample runs); they are named by the student's
module paths that the export records (``neurokd.layer_names``; the ONNX graph keeps none), and
each layer's spikes come from the output ``spikes.<layer>`` of that name (docs/formats.md,
"Layer names"). Files exported before that metadata: the layers are named after their weight
initializers, the spike counts after the outputs (there the neuron modules' paths).
"""

from __future__ import annotations

import ast
import time
from pathlib import Path

import numpy as np

from neurokd.data.encoding import batch_axis
from neurokd.energy.spike_counts import layer_chain
from neurokd.errors import NeuroKDError
from neurokd.runtime.progress import Reporter
from neurokd.student.geometry import LayerGeometry
from neurokd.student.inputs import DataRef, split_inputs
from neurokd.text import first_line

from ..onnx.checks import check_metadata, check_per_sample, load_checked_onnx
from ..verify import take
from .anytime import ExitTally, anytime, run_exit
from .result import SimulationResult

CHUNK = 64


def simulate_onnx(export: str | Path, dataset: str | None = None, samples: int | None = None,
                  reporter: Reporter | None = None, data_dir: str | None = None,
                  exit_rule: str | None = None, exit_threshold: float | None = None,
                  no_exit: bool = False) -> SimulationResult:
    import onnxruntime as ort

    path = Path(export)
    model = load_checked_onnx(path)  # size, external data, onnx.checker: before anything runs
    props = {p.key: p.value for p in model.metadata_props}
    if props.get("neurokd.model") != "student":
        raise NeuroKDError(f"{path}: not a student exported by neurokd export --target onnx")
    if props.get("neurokd.stepwise"):  # one timestep per call: its caller keeps the state
        raise NeuroKDError(f"{path} is a stepwise (one timestep per call) export: simulate the "
                           "unrolled one (neurokd export --target onnx --spikes), or step it "
                           "yourself as examples/stream_exit.py does")
    spike_outputs = [o for o in model.graph.output if o.name.startswith("spikes.")]
    if not spike_outputs:
        raise NeuroKDError(f"{path} has no spike outputs: export it with --spikes")
    dataset = dataset or props.get("neurokd.dataset")
    if not dataset:
        raise NeuroKDError(f"{path} does not name its data set: give --dataset")
    timesteps, input_shape = _metadata(path, props)
    layers = _named(path, props, synaptic_layers(model, input_shape))
    if len(layers) - len(spike_outputs) not in (0, 1):
        raise NeuroKDError(f"{path}: {len(layers)} conv/linear layers and {len(spike_outputs)} "
                           "neuron layers do not form a chain; the result file needs one")
    _check_chain(path, layers, [_per_sample_shape(o) for o in spike_outputs], input_shape)
    tally = ExitTally(_exit(path, props, exit_rule, exit_threshold, no_exit), timesteps)
    reporter = reporter or Reporter()
    recorded = _recorded(path, props, input_shape, timesteps)
    x, labels, _ = split_inputs(DataRef.of(recorded, dataset, data_dir), "test", samples,
                                input_shape, reporter)
    axis = batch_axis(x, input_shape)   # 1: [T, N, ...] event frames or rate-coded spikes
    count = x.shape[axis]
    try:
        # the bytes checked above, not the path again (it could be swapped for a FIFO since)
        session = ort.InferenceSession(model.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own exception types
        raise NeuroKDError(f"{path}: ONNX Runtime {ort.__version__} cannot load this model "
                           f"({first_line(exc, 200)})") from None
    names = ["logits", *(o.name for o in spike_outputs)]
    task = reporter.start("ONNX Runtime (samples)", count)
    predictions, totals, started = [], [0.0] * len(spike_outputs), time.perf_counter()
    logits = []  # [T, chunk, K] each: the accuracy after every timestep, and the exit
    exited = [0.0] * (len(spike_outputs) + 1)  # input events, then spikes: frames t < e_b
    for start in range(0, count, CHUNK):
        part = take(x, slice(start, start + CHUNK), axis).numpy()
        try:
            outputs = session.run(names, {"input": part})
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own exception types
            raise NeuroKDError(f"{path}: ONNX Runtime fails running this model; the file is "
                               f"damaged or not a neurokd export ({first_line(exc, 200)})") \
                from None
        predictions.append(outputs[0].mean(0).argmax(-1))
        logits.append(outputs[0])
        totals = [total + out.sum(axis=(0, 1)) for total, out in zip(totals, outputs[1:],
                                                                     strict=True)]
        mask = tally.mask(outputs[0])
        if mask is not None:  # spikes [T, B, ...]; input: event frames likewise, or graded
            events = tally.sum(part, mask) if axis else tally.graded(part, mask)
            exited = [done + new for done, new in zip(
                exited, [events, *(tally.sum(out, mask) for out in outputs[1:])], strict=True)]
        reporter.advance(task, min(CHUNK, count - start))
    seconds = time.perf_counter() - started
    reporter.finish(task, f"{seconds:.1f} s")
    accuracy = float((np.concatenate(predictions) == labels).mean())
    by_step, exit = anytime(np.concatenate(logits, axis=1), labels, tally)
    # Spikes in: the events are the spikes over samples and timesteps; graded input is
    # repeated at every timestep, its events the non-zero values x T.
    events = x.numpy().sum((0, 1)) if axis else (x.numpy() != 0).sum(0) * timesteps
    counts = _chain(layers, totals, events, count, timesteps, axis == 1)
    exit_counts = None if exit is None else _chain(layers, exited[1:], exited[0], count,
                                                   timesteps, axis == 1, tally.frames)
    return SimulationResult(
        "onnx", str(path), dataset, count, timesteps, accuracy, None, None, None, {},
        {o.name[len("spikes."):]: int(total.sum()) for o, total in zip(spike_outputs, totals,
                                                                       strict=True)},
        seconds / count, [name for name, _ in layers], [g.kind for _, g in layers], counts,
        accuracy_by_timestep=by_step, exit=exit, exit_run=tally.run(exit_counts))


def _chain(layers: list[tuple[str, LayerGeometry]], spikes: list, events, count: int,
           timesteps: int, input_spikes: bool, frames: int | None = None):
    """The run's counts (``frames``: sum(e_b) for the counts up to each exit step)."""
    spikes = [*spikes] + [None] * (len(layers) - len(spikes))  # the readout has no neurons
    return layer_chain([(name, geometry, total) for (name, geometry), total
                        in zip(layers, spikes, strict=True)], events, count, timesteps,
                       input_spikes=input_spikes, frames=frames)


def _exit(path: Path, props: dict[str, str], rule: str | None, threshold: float | None,
          no_exit: bool):
    """The exit applied: the options', else the one the file records (``neurokd.exit``, the
    run's rule and threshold), checked; else none."""
    recorded = None
    if "neurokd.exit" in props:
        from neurokd.files.json_text import loads_bounded

        recorded = loads_bounded(props["neurokd.exit"], f"{path}: metadata neurokd.exit")
    return run_exit(recorded, f"{path} metadata", rule, threshold, no_exit)


def _named(path: Path, props: dict[str, str], layers: list[tuple[str, LayerGeometry]]
           ) -> list[tuple[str, LayerGeometry]]:
    """``layers`` under the module paths the export recorded (``neurokd.layer_names``), one
    per conv/linear node; files from before it keep their weight initializers' names."""
    if "neurokd.layer_names" not in props:
        return layers
    from neurokd.files.json_text import loads_bounded

    names = loads_bounded(props["neurokd.layer_names"], f"{path}: metadata neurokd.layer_names")
    if not isinstance(names, list) or len(names) != len(layers) or \
            not all(isinstance(n, str) and 0 < len(n) <= 200 for n in names) or \
            len(set(names)) != len(names):
        raise NeuroKDError(f"{path}: metadata neurokd.layer_names must list {len(layers)} "
                           "distinct layer names, one per conv/linear node")
    return [(name, geometry) for name, (_, geometry) in zip(names, layers, strict=True)]


def _recorded(path: Path, props: dict[str, str], input_shape: tuple[int, ...],
              timesteps: int) -> dict:
    """The data settings the export recorded (``neurokd.data``); exports made before it:
    the data set, folder and image size (the input's width for imagefolder)."""
    if "neurokd.data" in props:
        from neurokd.files.json_text import loads_bounded

        settings = loads_bounded(props["neurokd.data"], f"{path}: metadata neurokd.data")
        if not isinstance(settings, dict):
            raise NeuroKDError(f"{path}: metadata neurokd.data is not a JSON object")
    else:
        size = props.get("neurokd.image_size", "")
        dataset = props.get("neurokd.dataset")
        settings = {"dataset": dataset, "data_dir": props.get("neurokd.data_dir"),
                    "image_size": int(size) if size.isdigit() else
                    (input_shape[-1] if dataset == "imagefolder" else 32)}
    return {**settings, "timesteps": timesteps}


def _metadata(path: Path, props: dict[str, str]) -> tuple[int, tuple[int, ...]]:
    """T and the per-sample input shape, which neurokd writes into every student export."""
    missing = [key for key in ("neurokd.timesteps", "neurokd.input_shape") if key not in props]
    if missing:
        raise NeuroKDError(f"{path}: lacks the metadata {', '.join(missing)} that neurokd "
                           "export --target onnx writes; export the student again")
    try:
        timesteps = int(props["neurokd.timesteps"])
        input_shape = tuple(int(d) for d in ast.literal_eval(props["neurokd.input_shape"]))
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError, OverflowError):
        raise NeuroKDError(f"{path}: metadata neurokd.timesteps={props['neurokd.timesteps']!r:.40} "
                           f"/ neurokd.input_shape={props['neurokd.input_shape']!r:.80} are not a "
                           "number and a shape like (1, 8, 8)") from None
    check_metadata(path, timesteps, input_shape)
    return timesteps, input_shape


def _per_sample_shape(value_info) -> tuple[int, ...] | None:
    """The static dims of a value after its leading ones (T and batch, or T*batch)."""
    dims = value_info.type.tensor_type.shape.dim
    sizes = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    return None if None in sizes[2:] else tuple(sizes[2:])


def _check_chain(path: Path, layers: list[tuple[str, LayerGeometry]],
                 spike_shapes: list[tuple[int, ...] | None], input_shape) -> None:
    """Refuse a graph that is not a chain before any sample runs (the file states its shapes)."""
    if any(shape is None for shape in spike_shapes):
        return  # dynamic per-sample dims: layer_chain checks the real spikes after the run
    for (name, _), shape in zip(layers, spike_shapes, strict=False):
        check_per_sample(path, f"spikes after {name}", shape)
    zeros = [np.zeros(shape) for shape in spike_shapes] + [None] * (len(layers) - len(spike_shapes))
    try:
        layer_chain([(name, geometry, spikes) for (name, geometry), spikes
                     in zip(layers, zeros, strict=True)], np.zeros(input_shape), 1, 1)
    except NeuroKDError as exc:
        raise NeuroKDError(f"{path}: {exc}") from None


def synaptic_layers(model, input_shape: tuple[int, ...]) -> list[tuple[str, LayerGeometry]]:
    """(name, geometry) per Conv/Gemm/MatMul node with a weight initializer, in graph order.

    A conv's input shape is the one ONNX shape inference finds (so a pool before it shows),
    else the output of the conv before it."""
    from onnx import helper, numpy_helper

    weights = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    inferred = _inferred_shapes(model)
    shape, layers = tuple(input_shape), []
    for node in model.graph.node:
        weight_name = next((n for n in node.input[1:2] if n in weights), None)
        if weight_name is None or node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        weight, name = weights[weight_name], weight_name.removesuffix(".weight")
        try:
            if node.op_type == "Conv":
                geometry = _conv_geometry(name, weight, attrs, inferred.get(node.input[0], shape))
            else:
                transposed = node.op_type == "Gemm" and attrs.get("transB", 0)
                out_features, in_features = weight.shape if transposed else weight.shape[::-1]
                geometry = LayerGeometry("dense", (int(in_features),), int(out_features),
                                         int(in_features))
        except ValueError as exc:
            raise NeuroKDError(f"layer {name}: {exc}") from None
        layers.append((name, geometry))
        shape = geometry.output_shape
    return layers


def _conv_geometry(name: str, weight: np.ndarray, attrs: dict, shape) -> LayerGeometry:
    if weight.ndim != 4:
        raise NeuroKDError(f"layer {name}: a {weight.ndim - 2}-D convolution; the result file "
                           "records 2-D convolutions")
    pads = [int(p) for p in attrs.get("pads", [0, 0, 0, 0])]
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or pads[:2] != pads[2:]:
        raise NeuroKDError(f"layer {name}: asymmetric padding {pads} cannot be recorded")
    out_ch, per_group, kh, kw = (int(d) for d in weight.shape)
    return LayerGeometry("conv", tuple(shape), out_ch, per_group, (kh, kw),
                         tuple(attrs.get("strides", [1, 1])), tuple(pads[:2]),
                         tuple(attrs.get("dilations", [1, 1])), int(attrs.get("group", 1)))


def _inferred_shapes(model) -> dict[str, tuple[int, ...]]:
    """Per-sample (C, H, W) of every 4-D value ONNX shape inference can size."""
    from onnx import shape_inference

    try:
        values = shape_inference.infer_shapes(model).graph.value_info
    except Exception:  # noqa: BLE001 - inference is a help here, the chain is checked anyway
        return {}
    shapes = {}
    for value in values:
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4 and all(d.HasField("dim_value") for d in dims[1:]):
            shapes[value.name] = tuple(int(d.dim_value) for d in dims[1:])
    return shapes
