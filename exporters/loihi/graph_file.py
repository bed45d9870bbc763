"""neurokd's Loihi graph file (``.net``, ``neurokd.format = "neurokd.loihi-graph"``): written,
read back, checked.

A network that is not a chain (residual adds, max pooling) cannot be lava-dl netx HDF5, which
holds a chain. This file keeps netx's vocabulary for what netx has (a ``CUBA`` neuron group,
``conv`` / ``dense`` synapses with netx's field names) and adds the edges (docs/formats.md)::

    /group/<i>/shape, bias, neuron/{type=CUBA, iDecay, vDecay, vThMant, refDelay, gradedSpike}
    /synapse/<j>/type ("conv" | "dense"), source (group index, -1: the input), target,
                 weight, conv: inChannels, outChannels, kernelSize, stride, padding, dilation,
                 groups; dense: inFeatures, outFeatures
    /neurokd/float/group/<i>/bias (attribute ``neuron``: the float neuron, JSON),
    /neurokd/float/synapse/<j>/weight   (the float network, for ``neurokd simulate``)
    root attributes neurokd.*: format, version, timesteps, input_shape, input_scale,
                 input_min, input_max, input_spikes, group_names, group_roles, group_scales,
                 synapse_names, and the run's data settings (as in the netx file)

Read as untrusted input, like every file: the HDF5 tree first (no links or outside storage,
array sizes within the memory budget), then every field where it is read, and the whole graph
(``graph_network.graph_problems``): synapses to nowhere, cycles, shapes that do not fit their
groups, branches not aligned in time, sizes a run could not hold (the groups' state for one
sample through ``neurokd.files.budget``). Each failure is one error naming the file and field.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from neurokd.errors import NeuroKDError
from neurokd.files.budget import check_bytes
from neurokd.files.hdf5 import check_hdf5_tree
from neurokd.files.paths import regular_size
from neurokd.student.geometry import LayerGeometry
from neurokd.text import first_line
from neurokd.validation import check_shape

from ..neurons import NeuronParams
from .fixed_point import CubaNeuron
from .graph_network import (
    FIXED_NEURON,
    GROUP_ROLES,
    FloatGraph,
    FloatGroup,
    FloatSynapse,
    GraphNetwork,
    GraphSynapse,
    NeuronGroup,
    graph_problems,
)
from .netx_checks import (
    BIAS_RANGE,
    SCALE_RANGE,
    WEIGHT_RANGE,
    NetxFieldError,
    check_input_meta,
    decode_meta,
    float_array,
    integer_array,
    is_dataset,
    neuron_params,
    neuron_values,
    scalar,
    scale_ok,
)

GRAPH_FORMAT = "neurokd.loihi-graph"
GRAPH_VERSION = 1
CONV_FIELDS = ("stride", "padding", "dilation")   # pairs; plus "groups"
MAX_NAME = 256
STATE_BYTES = 8 * 4           # per neuron and step: u, v, a spike, the synaptic sum (int64)


@dataclass
class GraphFile:
    network: GraphNetwork
    float_graph: FloatGraph
    meta: dict[str, Any]           # dataset, num_classes, class_names, source, ...


def _text(value: str) -> np.ndarray:
    return np.array([value.encode("ascii")], dtype="S10")


def write_graph(path: Path, network: GraphNetwork, float_graph: FloatGraph,
                meta: dict[str, Any]) -> None:
    """Write the file at ``path`` (the caller passes a temporary name and renames it)."""
    with h5py.File(path, "w") as handle:
        for i, group in enumerate(network.groups):
            entry = handle.create_group(f"group/{i}")
            entry["shape"] = np.array(group.shape, dtype=np.int64)
            entry["bias"] = group.bias.astype(np.int64)
            neuron = entry.create_group("neuron")
            neuron["type"] = _text("CUBA")
            neuron["iDecay"] = group.neuron.i_decay
            neuron["vDecay"] = group.neuron.v_decay
            neuron["vThMant"] = group.neuron.v_th_mant
            neuron["refDelay"] = 1
            neuron["gradedSpike"] = False
            twin = float_graph.groups[i]
            stored = handle.create_group(f"neurokd/float/group/{i}")
            stored["bias"] = twin.bias.detach().double().numpy()
            stored.attrs["neuron"] = json.dumps(None if twin.neuron is None else {
                "model": twin.neuron.model, "v_threshold": twin.neuron.v_threshold,
                "v_reset": twin.neuron.v_reset, "tau": twin.neuron.tau,
                "decay_input": twin.neuron.decay_input})
        for j, synapse in enumerate(network.synapses):
            _write_synapse(handle.create_group(f"synapse/{j}"), synapse)
            handle[f"neurokd/float/synapse/{j}/weight"] = \
                float_graph.synapses[j].weight.detach().float().numpy()  # the model's dtype
        attrs = {"format": GRAPH_FORMAT, "version": GRAPH_VERSION,
                 "timesteps": network.timesteps, "input_shape": list(network.input_shape),
                 "input_scale": network.input_scale, "input_min": network.input_min,
                 "input_max": network.input_max, "input_spikes": network.input_spikes,
                 "group_names": [g.name for g in network.groups],
                 "group_roles": [g.role for g in network.groups],
                 "group_scales": [g.scale for g in network.groups],
                 "synapse_names": [s.name for s in network.synapses]} | meta
        for key, value in attrs.items():
            handle.attrs[f"neurokd.{key}"] = json.dumps(value)


def _write_synapse(group: h5py.Group, synapse: GraphSynapse) -> None:
    group["type"] = _text(synapse.kind)
    group["source"] = np.int64(synapse.source)
    group["target"] = np.int64(synapse.target)
    group["weight"] = synapse.weight.astype(np.int16)   # -256..255: 9 bits (netx: any int)
    if synapse.kind == "conv":
        group["inChannels"] = synapse.input_shape[0]
        group["outChannels"] = synapse.geometry.out_channels
        group["kernelSize"] = np.array(synapse.geometry.kernel, dtype=np.int64)
        for key in CONV_FIELDS:
            group[key] = np.array(getattr(synapse, key), dtype=np.int64)
        group["groups"] = synapse.groups
    else:
        group["inFeatures"] = synapse.geometry.in_per_group
        group["outFeatures"] = synapse.geometry.out_channels


def is_graph_file(path: str | Path) -> bool:
    """Whether ``path`` says it is a graph file (the netx reader takes anything else)."""
    if not os.path.isfile(path):  # a FIFO would block HDF5's open: the netx reader refuses it
        return False
    try:
        with h5py.File(path, "r") as handle:
            value = handle.attrs.get("neurokd.format")
            return value is not None and json.loads(value) == GRAPH_FORMAT
    except (OSError, KeyError, RuntimeError, ValueError, TypeError, RecursionError):
        return False  # damaged: read_netx then says what it cannot read


def read_graph(path: str | Path) -> GraphFile:
    """A file written by ``neurokd export --target loihi`` for a network with branches or max
    pooling; anything off the format is one clear error naming the field."""
    path = Path(path)
    if not path.exists():
        raise NeuroKDError(f"no such export file: {path}")
    regular_size(path, "export file")  # a FIFO would block HDF5's open
    try:
        with h5py.File(path, "r") as handle:
            check_hdf5_tree(handle, path)  # before any array is read
            meta = _read_meta(handle, path)
            groups = [_read_group(handle, i, meta) for i in range(len(meta["group_names"]))]
            if len(handle.get("group", ())) != len(groups):
                raise NetxFieldError(f"{len(handle['group'])} groups but "
                                     f"{len(groups)} group names in the metadata")
            _check_run_size(groups, meta["timesteps"])
            synapses = [_read_synapse(handle, j, meta, groups)
                        for j in range(len(meta["synapse_names"]))]
            if len(handle.get("synapse", ())) != len(synapses):
                raise NetxFieldError(f"{len(handle['synapse'])} synapses but "
                                     f"{len(synapses)} synapse names in the metadata")
            network, float_graph = _assemble(handle, meta, groups, synapses)
    except NetxFieldError as exc:
        raise NeuroKDError(f"{path}: {exc}") from None
    except (OSError, KeyError, IndexError, ValueError, TypeError, RecursionError,
            RuntimeError, OverflowError) as exc:  # h5py's "B-tree iteration failed"; int(inf)
        raise NeuroKDError(f"{path}: cannot read the Loihi graph file ({type(exc).__name__}: "
                           f"{first_line(exc)})") from None
    return GraphFile(network, float_graph, meta)


def _read_meta(handle: h5py.File, path: Path) -> dict[str, Any]:
    meta = decode_meta(handle.attrs)
    if meta.get("format") != GRAPH_FORMAT:
        raise NeuroKDError(f"{path}: not a Loihi graph file written by neurokd export")
    if meta.get("version") != GRAPH_VERSION:
        raise NeuroKDError(f"{path}: neurokd Loihi graph version {meta.get('version')} is not "
                           f"supported (this neurokd reads {GRAPH_VERSION})")
    check_input_meta(meta)
    if "exit" in meta:  # the run's early exit (docs/anytime.md), checked before it is used
        from neurokd.anytime import checked_exit_record

        meta["exit"] = checked_exit_record(meta["exit"], f"{path}: neurokd.exit")
    names, roles, scales, synapse_names = (meta.get(k) for k in (
        "group_names", "group_roles", "group_scales", "synapse_names"))
    for key, value in (("group_names", names), ("synapse_names", synapse_names)):
        if not isinstance(value, list) or not value or not all(
                isinstance(n, str) and 0 < len(n) <= MAX_NAME for n in value):
            raise NetxFieldError(f"neurokd.{key} must be a non-empty list of names")
    if not isinstance(roles, list) or len(roles) != len(names) or \
            not all(r in GROUP_ROLES for r in roles):
        raise NetxFieldError(f"neurokd.group_roles must give one of {', '.join(GROUP_ROLES)} "
                             f"for each of the {len(names)} groups")
    if not isinstance(scales, list) or len(scales) != len(names) or not all(
            scale_ok(s) for s in scales):
        raise NetxFieldError(f"neurokd.group_scales must be {len(names)} finite numbers > 0 "
                             f"({SCALE_RANGE[0]:g}..{SCALE_RANGE[1]:g})")
    if not isinstance(meta.get("input_spikes"), bool):
        raise NetxFieldError("neurokd.input_spikes must be true or false")
    return meta


def _read_group(handle: h5py.File, i: int, meta: dict) -> NeuronGroup:
    name, role = meta["group_names"][i], meta["group_roles"][i]
    where = f"group {name} (/group/{i})"
    entry = _group(handle, f"group/{i}")
    shape = tuple(int(d) for d in np.asarray(_small(entry, "shape", where)).ravel())
    try:
        check_shape(f"{where} shape", list(shape))
    except NeuroKDError as exc:
        raise NetxFieldError(str(exc)) from None
    spiking = GROUP_ROLES[role].spiking
    cuba = CubaNeuron(*neuron_values(entry["neuron"], f"{where} neuron", spiking))
    if GROUP_ROLES[role].fixed and cuba != FIXED_NEURON:
        raise NetxFieldError(f"{where}: a {role} group needs iDecay = vDecay = 4096 and "
                             f"vThMant = 1 (one spike in fires it), not {cuba}")
    bias = integer_array(entry["bias"], f"{where} bias", *BIAS_RANGE)
    return NeuronGroup(name, role, shape, bias, cuba, float(meta["group_scales"][i]))


def _group(handle: h5py.File, name: str) -> h5py.Group:
    """The HDF5 group ``name`` (a damaged tree may hold a dataset or a datatype there)."""
    entry = handle[name]
    if not isinstance(entry, h5py.Group):
        raise NetxFieldError(f"/{name} must be a group, not {type(entry).__name__}")
    return entry


def _small(group, key: str, where: str):
    """A small dataset (a shape, a pair), refused when it is not."""
    dataset = group.get(key)
    if not is_dataset(dataset) or dataset.size > 8 or dataset.dtype.kind not in "iu":
        raise NetxFieldError(f"{where} {key} must be a few whole numbers")
    return dataset[()]


def _check_run_size(groups: list[NeuronGroup], timesteps: int) -> None:
    """One sample through every group must fit the memory budget (a small file can claim a
    billion neurons)."""
    neurons = sum(math.prod(g.shape) for g in groups)
    try:
        check_bytes(neurons * timesteps * STATE_BYTES,
                    f"running one sample through its {neurons:,} neurons")
    except NeuroKDError as exc:
        raise NetxFieldError(str(exc)) from None


def _read_synapse(handle: h5py.File, j: int, meta: dict,
                  groups: list[NeuronGroup]) -> GraphSynapse:
    name = meta["synapse_names"][j]
    where = f"synapse {name} (/synapse/{j})"
    entry = _group(handle, f"synapse/{j}")
    kind = entry["type"][0].decode("ascii") if is_dataset(entry.get("type")) and \
        entry["type"].dtype.kind == "S" and entry["type"].size == 1 else None
    if kind not in ("conv", "dense"):
        raise NetxFieldError(f"{where} type must be conv or dense")
    source = scalar(entry, "source", -1, len(groups) - 1, where)
    target = scalar(entry, "target", 0, len(groups) - 1, where)
    source_shape = tuple(meta["input_shape"]) if source < 0 else groups[source].shape
    if not is_dataset(entry.get("weight")):
        raise NetxFieldError(f"{where} weight must be an array (an HDF5 dataset)")
    weight_shape = tuple(int(d) for d in entry["weight"].shape)
    try:
        geometry = _geometry(entry, kind, source_shape, weight_shape, where)
    except ValueError as exc:
        raise NetxFieldError(f"{where}: {exc}") from None
    weight = integer_array(entry["weight"], f"{where} weight", WEIGHT_RANGE[0], 255)
    return GraphSynapse(name, source, target, geometry, weight)


def _geometry(entry, kind: str, source_shape: tuple[int, ...], weight_shape: tuple[int, ...],
              where: str) -> LayerGeometry:
    """The synapse's geometry from its fields, its weight's *shape* (no data read yet) and its
    source's shape; a field that says otherwise than the weight is a lie, refused."""
    if kind == "dense":
        if len(weight_shape) != 2:
            raise ValueError(f"dense weight of shape {weight_shape}")
        fields = (scalar(entry, "outFeatures", 1, 1 << 31, where),
                  scalar(entry, "inFeatures", 1, 1 << 31, where))
        if fields != weight_shape:
            raise ValueError(f"outFeatures x inFeatures {fields} but a weight of shape "
                             f"{weight_shape}")
        return LayerGeometry("dense", (math.prod(source_shape),), *weight_shape)
    if len(weight_shape) != 4 or len(source_shape) != 3:
        raise ValueError(f"conv weight of shape {weight_shape} on a source of shape "
                         f"{source_shape}")
    pairs = {key: tuple(int(v) for v in np.asarray(_small(entry, key, where)).ravel())
             for key in (*CONV_FIELDS, "kernelSize")}
    if any(len(v) != 2 for v in pairs.values()):
        raise ValueError("stride, padding, dilation and kernelSize must be pairs")
    groups = scalar(entry, "groups", 1, 1 << 20, where)
    said = (scalar(entry, "outChannels", 1, 1 << 20, where),
            scalar(entry, "inChannels", 1, 1 << 20, where), pairs["kernelSize"])
    if said != (weight_shape[0], weight_shape[1] * groups, weight_shape[2:]):
        raise ValueError(f"outChannels, inChannels, kernelSize {said} but a weight of shape "
                         f"{weight_shape} in {groups} groups")
    return LayerGeometry("conv", tuple(source_shape), weight_shape[0], weight_shape[1],
                         weight_shape[2:], pairs["stride"], pairs["padding"], pairs["dilation"],
                         groups)


def _assemble(handle: h5py.File, meta: dict, groups: list[NeuronGroup],
              synapses: list[GraphSynapse]) -> tuple[GraphNetwork, FloatGraph]:
    """The integer network (its structure checked as a whole) and its float twin."""
    shape, steps = tuple(meta["input_shape"]), int(meta["timesteps"])
    network_fields = (shape, steps, float(meta["input_scale"]), int(meta["input_min"]),
                      int(meta["input_max"]), meta["input_spikes"])

    class _Unchecked:   # graph_problems reads these attributes only
        pass

    probe = _Unchecked()
    probe.groups, probe.synapses, probe.input_shape = groups, synapses, shape
    problems = graph_problems(probe)
    if problems:
        raise NetxFieldError(problems[0])
    network = GraphNetwork(groups, synapses, *network_fields)
    float_groups = []
    for i, group in enumerate(groups):
        where = f"group {group.name} float copy (/neurokd/float/group/{i})"
        stored = _group(handle, f"neurokd/float/group/{i}")
        params = neuron_params(json.loads(stored.attrs["neuron"]), where)
        if (params is None) == (group.role == "layer"):
            raise NetxFieldError(f"{where}: a {group.role} group "
                                 f"{'needs' if group.role == 'layer' else 'has no'} neuron")
        bias = float_array(stored["bias"], f"{where} bias")
        if bias.shape != group.bias.shape:
            raise NetxFieldError(f"{where}: {bias.size} biases for {group.bias.size} channels")
        float_groups.append(FloatGroup(group.name, group.role, group.shape,
                                       torch.from_numpy(bias),
                                       None if params is None else NeuronParams(**params)))
    float_synapses = []
    for j, syn in enumerate(synapses):
        where = f"synapse {syn.name} float copy (/neurokd/float/synapse/{j})"
        weight = float_array(handle[f"neurokd/float/synapse/{j}/weight"], f"{where} weight")
        if weight.shape != syn.weight.shape:
            raise NetxFieldError(f"{where}: weight of shape {weight.shape}, the integer one is "
                                 f"{syn.weight.shape}")
        float_synapses.append(FloatSynapse(syn.name, syn.source, syn.target, syn.geometry,
                                           torch.from_numpy(weight)))
    return network, FloatGraph(float_groups, float_synapses, shape, steps)
