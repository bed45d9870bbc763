"""The lava-dl netx HDF5 file (``.net``): write it, read it back, and its float twin.

Layout read by lava-dl 0.6 ``netx.hdf5.Network`` (see DESIGN.md): ``/layer/0`` is ``input``
(shape only: the first synaptic layer receives graded spikes, or binary spikes when the
metadata says ``input_spikes``: event frames, rate-coded data), then per layer ``conv`` or
``dense`` with integer ``weight`` / ``bias`` and a ``neuron`` group (``CUBA``: ``iDecay``,
``vDecay``, ``vThMant``, ``refDelay``, ``gradedSpike``), and a ``flatten`` layer before the first
dense one. Strings are 1-element ``S10`` arrays, shapes C,H,W (netx reverses them to W,H,C).

What netx does not read lives beside ``/layer``, where netx never looks (it only opens
``net_config['layer']``): root attributes with the run's metadata (``neurokd.*``: data set, T,
input quantization, class names, layer names and scales) and ``/neurokd/float/<i>`` with the
float weights and neuron parameters, so ``neurokd simulate`` can run the float network from
the file alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from neurokd.data.encoding import repeat_over_time
from neurokd.errors import NeuroKDError
from neurokd.files.hdf5 import check_hdf5_tree
from neurokd.files.paths import regular_size
from neurokd.student.geometry import HasGeometry, LayerGeometry
from neurokd.text import first_line

from ..graph import NeuronParams, neuron_steps
from .fixed_point import CubaNeuron, QuantizedLayer, QuantizedNetwork
from .netx_checks import (
    BIAS_RANGE,
    WEIGHT_RANGE,
    NetxFieldError,
    check_meta,
    decode_meta,
    float_array,
    integer_array,
    neuron_params,
    neuron_values,
)

FILE_FORMAT = "neurokd.loihi-netx"
FILE_VERSION = 1
CONV_GEOMETRY = ("stride", "padding", "dilation")   # pairs; plus "groups"


@dataclass
class FloatLayer(HasGeometry):
    """A synaptic layer of the float network (BatchNorm folded in) and its neurons, if any."""

    geometry: LayerGeometry
    weight: torch.Tensor
    bias: torch.Tensor
    neuron: NeuronParams | None


@dataclass
class NetxFile:
    network: QuantizedNetwork
    float_layers: list[FloatLayer]
    meta: dict[str, Any]           # dataset, num_classes, class_names, source, ...


def _text(value: str) -> np.ndarray:
    return np.array([value.encode("ascii")], dtype="S10")


def write_netx(path: Path, network: QuantizedNetwork, float_layers: list[FloatLayer],
               meta: dict[str, Any]) -> None:
    """Write the file at ``path`` (the caller passes a temporary name and renames it)."""
    with h5py.File(path, "w") as handle:
        layers = handle.create_group("layer")
        entry = layers.create_group("0")
        entry["type"] = _text("input")
        entry["shape"] = np.array(network.input_shape, dtype=np.int64)
        index = 1
        for position, layer in enumerate(network.layers):
            before = network.layers[position - 1].output_shape if position else \
                network.input_shape
            if layer.kind == "dense" and len(before) > 1:  # netx flattens W,H,C as C,H,W
                flat = layers.create_group(str(index))
                flat["type"] = _text("flatten")
                flat["shape"] = np.array([int(np.prod(layer.input_shape))], dtype=np.int64)
                index += 1
            _write_layer(layers.create_group(str(index)), layer)
            index += 1
        _write_float(handle.create_group("neurokd/float"), float_layers)
        attrs = {"format": FILE_FORMAT, "version": FILE_VERSION,
                 "timesteps": network.timesteps, "input_shape": list(network.input_shape),
                 "input_scale": network.input_scale, "input_min": network.input_min,
                 "input_max": network.input_max, "input_spikes": network.input_spikes,
                 "layer_names": [lay.name for lay in network.layers],
                 "layer_scales": [lay.scale for lay in network.layers],
                 "readout_has_neurons": network.layers[-1].spiking,
                 "layer_input_shapes": [list(lay.input_shape) for lay in network.layers]} | meta
        for key, value in attrs.items():
            handle.attrs[f"neurokd.{key}"] = json.dumps(value)


def _write_layer(group: h5py.Group, layer: QuantizedLayer) -> None:
    group["type"] = _text(layer.kind)
    group["shape"] = np.array(layer.output_shape, dtype=np.int64)
    if layer.kind == "conv":
        group["inChannels"] = layer.input_shape[0]
        group["outChannels"] = layer.output_shape[0]
        group["kernelSize"] = np.array(layer.weight.shape[2:], dtype=np.int64)
        for key in CONV_GEOMETRY:
            group[key] = np.array(getattr(layer, key), dtype=np.int64)
        group["groups"] = layer.groups
    else:
        group["inFeatures"] = layer.weight.shape[1]
        group["outFeatures"] = layer.weight.shape[0]
    group["weight"] = layer.weight.astype(np.int64)
    group["bias"] = layer.bias.astype(np.int64)
    neuron = group.create_group("neuron")
    neuron["type"] = _text("CUBA")
    neuron["iDecay"] = layer.neuron.i_decay
    neuron["vDecay"] = layer.neuron.v_decay
    neuron["vThMant"] = layer.neuron.v_th_mant
    neuron["refDelay"] = 1
    neuron["gradedSpike"] = False


def _write_float(group: h5py.Group, float_layers: list[FloatLayer]) -> None:
    for i, layer in enumerate(float_layers):
        entry = group.create_group(str(i))
        entry["weight"] = layer.weight.detach().cpu().numpy()
        entry["bias"] = layer.bias.detach().cpu().numpy()
        params = None if layer.neuron is None else {
            "model": layer.neuron.model, "v_threshold": layer.neuron.v_threshold,
            "v_reset": layer.neuron.v_reset, "tau": layer.neuron.tau,
            "decay_input": layer.neuron.decay_input}
        entry.attrs["layer"] = json.dumps({
            "kind": layer.kind, "neuron": params, "stride": list(layer.stride),
            "padding": list(layer.padding), "dilation": list(layer.dilation),
            "groups": layer.groups})  # the geometry is the quantized layer's; kept for readers


def read_netx(path: str | Path) -> NetxFile:
    """A file written by ``neurokd export --target loihi``; anything else is one clear error
    naming the field (the checks: ``netx_checks.py``)."""
    path = Path(path)
    if not path.exists():
        raise NeuroKDError(f"no such export file: {path}")
    regular_size(path, "export file")  # a FIFO would block HDF5's open
    try:
        with h5py.File(path, "r") as handle:
            check_hdf5_tree(handle, path)  # before any array is read
            meta = _read_meta(handle, path)
            network = _read_network(handle["layer"], meta)
            float_layers = [_read_float(handle[f"neurokd/float/{i}"], layer)
                            for i, layer in enumerate(network.layers)]
            _check_shapes(path, network, float_layers)
    except NetxFieldError as exc:
        raise NeuroKDError(f"{path}: {exc}") from None
    except (OSError, KeyError, IndexError, ValueError, TypeError, RecursionError,
            RuntimeError, OverflowError) as exc:  # h5py's "B-tree iteration failed"; int(inf)
        raise NeuroKDError(f"{path}: cannot read the netx file ({type(exc).__name__}: "
                           f"{first_line(exc)})") from None
    return NetxFile(network, float_layers, meta)


def _read_meta(handle: h5py.File, path: Path) -> dict[str, Any]:
    meta = decode_meta(handle.attrs)
    if meta.get("format") != FILE_FORMAT:
        raise NeuroKDError(f"{path}: not a netx file written by neurokd export "
                           "(no neurokd metadata)")
    if meta.get("version") != FILE_VERSION:
        raise NeuroKDError(f"{path}: neurokd netx version {meta.get('version')} is not "
                           f"supported (this neurokd reads {FILE_VERSION})")
    check_meta(meta)
    if "exit" in meta:  # the run's early exit (docs/anytime.md), checked before it is used
        from neurokd.anytime import checked_exit_record

        meta["exit"] = checked_exit_record(meta["exit"], f"{path}: neurokd.exit")
    return meta


def _read_network(layers: h5py.Group, meta: dict) -> QuantizedNetwork:
    names, scales = meta["layer_names"], meta["layer_scales"]
    in_shapes = meta["layer_input_shapes"]
    synaptic = sum(layers[str(i)]["type"][0] not in (b"input", b"flatten")
                   for i in range(1, len(layers)))
    if not len(names) == len(scales) == len(in_shapes) == synaptic:
        raise ValueError(f"{synaptic} layers but {len(names)} layer names, {len(scales)} "
                         f"scales and {len(in_shapes)} input shapes in the metadata")
    result: list[QuantizedLayer] = []
    for index in range(1, len(layers)):
        group = layers[str(index)]
        kind = group["type"][0].decode("ascii")
        if kind == "flatten":
            continue
        k = len(result)
        geometry = _geometry(group, kind, tuple(int(d) for d in in_shapes[k]), names[k])
        spiking = index < len(layers) - 1 or bool(meta["readout_has_neurons"])
        where = f"layer {names[k]} (/layer/{index})"
        cuba = CubaNeuron(*neuron_values(group["neuron"], f"{where} neuron", spiking))
        result.append(QuantizedLayer(
            names[k], geometry, integer_array(group["weight"], f"{where} weight", *WEIGHT_RANGE),
            integer_array(group["bias"], f"{where} bias", *BIAS_RANGE), cuba, spiking,
            scale=float(scales[k])))
    return QuantizedNetwork(result, tuple(meta["input_shape"]), int(meta["timesteps"]),
                            float(meta["input_scale"]), int(meta["input_min"]),
                            int(meta["input_max"]), _flag(meta.get("input_spikes", False)))


def _flag(value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"input_spikes must be true or false, not {value!r}")
    return value


def _geometry(group: h5py.Group, kind: str, input_shape: tuple[int, ...],
              name: str) -> LayerGeometry:
    """A layer's geometry from its attributes and its weight's *shape* (no data read yet),
    checked against the shape netx records for its output."""
    weight_shape = tuple(int(d) for d in group["weight"].shape)
    try:
        geometry = _geometry_of(group, kind, input_shape, weight_shape)
    except ValueError as exc:
        raise ValueError(f"layer {name}: {exc}") from None
    recorded = tuple(int(d) for d in group["shape"][()])
    if recorded != geometry.output_shape:
        raise ValueError(f"layer {name}: shape {recorded} but its weights and input give "
                         f"{geometry.output_shape}")
    return geometry


def _geometry_of(group: h5py.Group, kind: str, input_shape: tuple[int, ...],
                 weight_shape: tuple[int, ...]) -> LayerGeometry:
    if kind == "dense":
        if len(weight_shape) != 2:
            raise ValueError(f"dense weight of shape {weight_shape}")
        return LayerGeometry("dense", input_shape, weight_shape[0], weight_shape[1])
    if kind != "conv":
        raise ValueError(f"type {kind!r} (neurokd writes conv and dense)")
    if len(weight_shape) != 4:
        raise ValueError(f"conv weight of shape {weight_shape}")
    pairs = {key: tuple(int(v) for v in group[key][()]) for key in CONV_GEOMETRY}
    return LayerGeometry("conv", input_shape, weight_shape[0], weight_shape[1], weight_shape[2:],
                         pairs["stride"], pairs["padding"], pairs["dilation"],
                         int(group["groups"][()]))


def _check_shapes(path: Path, network: QuantizedNetwork,
                  float_layers: list[FloatLayer]) -> None:
    """Every array fits its neighbours, so a damaged or hand-edited file fails here, by
    layer name, rather than deep inside a simulation."""
    elements = int(np.prod(network.input_shape))
    for layer, twin in zip(network.layers, float_layers, strict=True):
        w = layer.weight
        problem = ""
        if tuple(twin.weight.shape) != w.shape:
            problem = f"weight shape {w.shape} (float copy {tuple(twin.weight.shape)})"
        elif int(np.prod(layer.input_shape)) != elements:
            problem = f"input {layer.input_shape} does not fit the layer before ({elements})"
        elif len(layer.bias) != w.shape[0] or len(twin.bias) != w.shape[0]:
            problem = f"{len(layer.bias)} biases for {w.shape[0]} outputs"
        if problem:
            raise NeuroKDError(f"{path}: layer {layer.name}: {problem}; the file is damaged "
                               "or was not written by this neurokd")
        elements = int(np.prod(layer.output_shape))


def _read_float(group: h5py.Group, layer: QuantizedLayer) -> FloatLayer:
    where = f"layer {layer.name} float copy (/{group.name.lstrip('/')})"
    spec = json.loads(group.attrs["layer"])
    params = neuron_params(spec["neuron"], where)
    return FloatLayer(layer.geometry, torch.from_numpy(float_array(group["weight"],
                                                                   f"{where} weight")),
                      torch.from_numpy(float_array(group["bias"], f"{where} bias")),
                      None if params is None else NeuronParams(**params))


def run_float(float_layers: list[FloatLayer], x: torch.Tensor, timesteps: int,
              keep_spikes: bool = True,
              time_major: bool = False) -> tuple[np.ndarray, list[np.ndarray]]:
    """Float network on analog inputs ``[N, ...]`` (or, ``time_major``, on ``[T, N, ...]``
    spikes): logits ``[T, N, K]`` and the spikes ``[T, N, ...]`` of every neuron layer (none
    without ``keep_spikes``), with spikingjelly's neuron arithmetic."""
    sequence = x.float() if time_major else repeat_over_time(x.float(), timesteps)
    out = sequence.reshape(-1, *sequence.shape[2:])
    spikes: list[np.ndarray] = []
    with torch.no_grad():
        for layer in float_layers:
            if layer.kind == "conv":
                out = F.conv2d(out, layer.weight, layer.bias, layer.stride, layer.padding,
                               layer.dilation, layer.groups)
            else:
                out = F.linear(out.reshape(len(out), -1), layer.weight, layer.bias)
            if layer.neuron is not None:
                seq = neuron_steps(out.reshape(timesteps, -1, *out.shape[1:]), layer.neuron)
                if keep_spikes:
                    spikes.append(seq.numpy())
                out = seq.reshape(-1, *seq.shape[2:])
    return out.reshape(timesteps, -1, *out.shape[1:]).numpy(), spikes
