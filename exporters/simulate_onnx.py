"""``neurokd simulate --backend onnx``: an ONNX student export on a test split, in ONNX Runtime.

Gives the export's accuracy and the same per-layer event counts as the Lava backend (the
``neurokd.lava-result`` file), read from the ``spikes.<layer>`` outputs that
``neurokd export --target onnx --spikes`` adds. The layers are the file's Conv / Gemm / MatMul
nodes in order, each followed by the neuron layer whose spikes come next (a chain, as on
Loihi); they are named after their weight initializers (``executor.layers.K``: the ONNX graph
keeps no module paths), and the neuron layers after their outputs.
"""

from __future__ import annotations

import ast
import time
from pathlib import Path

import numpy as np

from neurokd.errors import NeuroKDError
from neurokd.progress import Reporter

from .simulate import SimulationResult, layer_arrays
from .verify import split_samples

CHUNK = 64


def simulate_onnx(export: str | Path, dataset: str | None, samples: int | None,
                  reporter: Reporter, data_dir: str | None = None) -> SimulationResult:
    import onnx
    import onnxruntime as ort

    path = Path(export)
    if not path.is_file():
        raise NeuroKDError(f"no such export file: {path}")
    try:
        model = onnx.load(path)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types for a bad file
        raise NeuroKDError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from None
    props = {p.key: p.value for p in model.metadata_props}
    if props.get("neurokd.model") != "student":
        raise NeuroKDError(f"{path}: not a student exported by neurokd export --target onnx")
    spike_outputs = [o.name for o in model.graph.output if o.name.startswith("spikes.")]
    if not spike_outputs:
        raise NeuroKDError(f"{path} has no spike outputs: export it with --spikes")
    dataset = dataset or props.get("neurokd.dataset")
    if not dataset:
        raise NeuroKDError(f"{path} does not name its data set: give --dataset")
    timesteps = int(props["neurokd.timesteps"])
    input_shape = tuple(ast.literal_eval(props["neurokd.input_shape"]))
    layers = synaptic_layers(model, input_shape)
    if len(layers) - len(spike_outputs) not in (0, 1):
        raise NeuroKDError(f"{path}: {len(layers)} conv/linear layers and {len(spike_outputs)} "
                           "neuron layers do not form a chain; the result file needs one")
    x, labels, _ = split_samples(dataset, samples, input_shape, "test",
                                 *_data_location(props, dataset, data_dir, input_shape))
    session = ort.InferenceSession(path.read_bytes(), providers=["CPUExecutionProvider"])
    names = ["logits", *spike_outputs]
    task = reporter.start("ONNX Runtime (samples)", len(x))
    predictions, totals, started = [], [0.0] * len(spike_outputs), time.perf_counter()
    for start in range(0, len(x), CHUNK):
        outputs = session.run(names, {"input": x[start:start + CHUNK].numpy()})
        predictions.append(outputs[0].mean(0).argmax(-1))
        totals = [total + out.sum(axis=(0, 1)) for total, out in zip(totals, outputs[1:],
                                                                     strict=True)]
        reporter.advance(task, min(CHUNK, len(x) - start))
    seconds = time.perf_counter() - started
    reporter.finish(task, f"{seconds:.1f} s")
    accuracy = float((np.concatenate(predictions) == labels).mean())
    spikes = [*totals] + [None] * (len(layers) - len(totals))
    arrays = layer_arrays([(geometry, shape, counts) for (_, _, geometry, shape), counts
                           in zip(layers, spikes, strict=True)],
                          (x.numpy() != 0).sum(0) * timesteps)
    return SimulationResult(
        "onnx", str(path), dataset, len(x), timesteps, accuracy, None, None, None, {},
        {name[len("spikes."):]: int(total.sum()) for name, total in zip(spike_outputs, totals,
                                                                        strict=True)},
        seconds / len(x), [name for name, *_ in layers], [kind for _, kind, *_ in layers],
        arrays)


def _data_location(props: dict[str, str], dataset: str, data_dir: str | None,
                   input_shape: tuple[int, ...]) -> tuple[str | None, int]:
    """Folder and image size of the export's own data set, as its metadata records them
    (``data_dir`` wins); exports without them: the input's width for imagefolder."""
    size = props.get("neurokd.image_size", "")
    image_size = int(size) if size.isdigit() else \
        (input_shape[-1] if dataset == "imagefolder" else 32)
    if dataset == props.get("neurokd.dataset"):
        data_dir = data_dir or props.get("neurokd.data_dir")
    return data_dir, image_size


def synaptic_layers(model, input_shape: tuple[int, ...]) -> list[tuple]:
    """(name, "conv"|"dense", geometry, per-sample input shape) per Conv/Gemm/MatMul node."""
    from onnx import helper, numpy_helper

    weights = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    shape, layers = tuple(input_shape), []
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        weight_name = next((n for n in node.input[1:2] if n in weights), None)
        if weight_name is None or node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        weight = weights[weight_name]
        name = weight_name.removesuffix(".weight")
        if node.op_type == "Conv":
            out_ch, per_group, kh, kw = weight.shape
            stride = list(attrs.get("strides", [1, 1]))
            pads = list(attrs.get("pads", [0, 0, 0, 0]))
            dilation = list(attrs.get("dilations", [1, 1]))
            geometry = [out_ch, per_group, kh, kw, *stride, *pads[:2], *dilation,
                        attrs.get("group", 1)]
            layers.append((name, "conv", geometry, shape))
            height, width = (
                (size + pads[i] + pads[i + 2] - dilation[i] * (k - 1) - 1) // stride[i] + 1
                for i, (size, k) in enumerate(zip(shape[1:], (kh, kw), strict=True)))
            shape = (out_ch, height, width)
        else:
            transposed = node.op_type == "Gemm" and attrs.get("transB", 0)
            out_features, in_features = weight.shape if transposed else weight.shape[::-1]
            layers.append((name, "dense", [out_features, in_features], (in_features,)))
            shape = (out_features,)
    return layers
