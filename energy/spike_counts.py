"""The per-layer spike counts of a deployed run (``neurokd simulate --save``), as an ``.npz`` file.

This module owns the format: its constants, :func:`layer_chain` (the counts of a chain of
layers, checked), the writer and the reader. ``neurokd simulate`` (Lava and ONNX backends)
and :func:`write_spike_counts` of a float count all write through :func:`_arrays`, and the
reader refuses anything the writer would not write. Contract (``RESULT_KEYS``)::

    format="neurokd.spike-counts", version=1, backend="lava"|"onnx", samples=N, timesteps=T,
    layer_names=str [L], layer_types=str [L] ("conv" | "dense"),
    geometry_{i}=int64: conv [out_ch, in_ch_per_group, kH, kW, sH, sW, pH, pW, dH, dW, groups];
                        dense [out_features, in_features]
    input_shape_{i}=int64 (C,H,W) or (N,)
    input_events_{i}=float64 of input_shape_{i}: events arriving at layer i summed over samples
        and timesteps (i=0: non-zero graded input values; i>0: spikes)
    has_neurons_{i}=0|1, output_spikes_{i}=float64, as many as layer i has outputs (when
        has_neurons_{i}=1; simulate writes them in the layer's output shape)

An optional ``dataset=str`` names the data set the run was on (``simulate --save`` writes it;
``energy report CKPT --from-sim`` refuses a file of another data set, ``energy.pairing``).
Layer 0 sees graded input: it is priced as dense MACs, like the float estimate's encoding layer,
unless the optional ``input_spikes=1`` says its input was spikes (event frames, rate-coded
data): its ``input_events_0`` are then input spikes, priced as synaptic operations.
The file records no biases: every layer is priced with one, as the Loihi export (netx stores a
bias per layer) and BatchNorm'd students have. Under the memory model a Lava run's accesses
have Loihi's word sizes (:func:`deployed_layout`).
Files written before the format had a backend-neutral name say ``format="neurokd.lava-result"``
(same content, Lava and ONNX runs alike); they are read the same way.

An early exit (optional, all or none; ``EXIT_KEYS``): a run whose samples stopped at their exit
steps (``neurokd simulate`` with an exit rule, docs/anytime.md) also holds::

    exit_rule=str (a name of neurokd.anytime.EXIT_RULES), exit_threshold=float (in its range),
    exit_steps=int64 [N]: each sample's exit step e_b, in 1..T,
    input_events_exit_{i}, output_spikes_exit_{i} (where output_spikes_{i} is): the same
        counts as input_events_{i} / output_spikes_{i}, same shapes, over each sample's frames
        t < e_b only (so elementwise <= the totals)

The student is causal, so those are the counts of running sample b for e_b steps: priced as a
run whose layers ran sum(e_b) sample steps (neuron updates: neurons x sum(e_b)). A file without
these keys (and every file written before them) holds the full-T run only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurokd.errors import ConfigError, NeuroKDError
from neurokd.files.npz import read_npz
from neurokd.files.safe_io import write_atomic
from neurokd.student.geometry import LayerGeometry

from .events import EventCounts, LayerEvents

RESULT_FORMAT = "neurokd.spike-counts"
LEGACY_FORMATS = ("neurokd.lava-result",)   # the same contract under its first name
RESULT_VERSION = 1
# {i} is the synaptic layer's index; output_spikes_{i} only when has_neurons_{i} is 1.
RESULT_KEYS = {
    "header": ("format", "version", "backend", "samples", "timesteps", "layer_names",
               "layer_types"),
    "per_layer": ("geometry_{i}", "input_shape_{i}", "input_events_{i}", "has_neurons_{i}",
                  "output_spikes_{i}"),
}
# The optional early exit (module docstring): all of them or none.
EXIT_KEYS = {
    "header": ("exit_rule", "exit_threshold", "exit_steps"),
    "per_layer": ("input_events_exit_{i}", "output_spikes_exit_{i}"),
}


@dataclass(frozen=True)
class ExitRun:
    """A run's early exit as the file holds it: the rule and threshold, each sample's exit step
    (``steps``, int64 [N] in 1..T) and the counts over each sample's frames t < e_b
    (``counts``: the same layers as the totals; each layer's ``frames`` is sum(e_b))."""

    rule: str
    threshold: float
    steps: np.ndarray
    counts: EventCounts


def layer_chain(layers: list[tuple[str, LayerGeometry, np.ndarray | None]],
                input_events: np.ndarray, samples: int, timesteps: int,
                input_spikes: bool = False, frames: int | None = None) -> EventCounts:
    """The counts of a chain of synaptic layers, each fed by the neurons of the one before.

    ``layers``: (name, geometry, output spikes summed over samples and timesteps, or None for
    a layer without neurons) in order; ``input_events``: the events into the first layer.
    A layer whose input is not exactly the previous layer's spikes (a pool or a branch in
    between) cannot be written in this format and is refused by name. ``input_spikes``: the
    first layer's input was spikes too (else graded values). ``frames``: the sample steps
    the counts cover, ``samples x timesteps`` unless an exit stopped samples early (sum(e_b)).
    """
    frames, rows = samples * timesteps if frames is None else frames, []
    events, feeding = np.asarray(input_events, dtype=np.float64), "the input"
    for i, (name, geometry, spikes) in enumerate(layers):
        if events is None:
            raise NeuroKDError(f"layer {name} follows {feeding}, which has no neurons: the "
                               "result file needs a chain of conv/linear layers with neurons")
        fits = events.size == int(np.prod(geometry.input_shape)) and (
            geometry.kind == "dense" or events.shape == tuple(geometry.input_shape))
        if not fits:
            raise NeuroKDError(f"layer {name} takes input {tuple(geometry.input_shape)} but "
                               f"{feeding} gives {events.shape}: something between them (a "
                               "pool, a branch) is not in the result file's chain of layers")
        if spikes is not None:
            spikes = np.asarray(spikes, dtype=np.float64)
            if spikes.shape != tuple(geometry.output_shape):
                raise NeuroKDError(f"the neuron layer after {name} gives {spikes.shape}, the "
                                   f"layer outputs {tuple(geometry.output_shape)}: something "
                                   "between them is not in the result file's chain of layers")
        rows.append(LayerEvents(name, geometry, events.reshape(geometry.input_shape), frames,
                                i > 0 or input_spikes,
                                0 if spikes is None else spikes.size * frames, spikes))
        events, feeding = spikes, f"the neuron layer after {name}"
    return EventCounts(rows, samples, timesteps)


def write_spike_counts(path: str | Path, counts: EventCounts, backend: str = "lava",
                       dataset: str | None = None, exit: ExitRun | None = None) -> Path:
    """``counts`` (every layer with a geometry) in the contract above, written atomically;
    ``dataset``: the data set the run was on (so a pairing with a checkpoint can be checked);
    ``exit``: the run's early exit (its counts over the same layers as ``counts``).

    Refused (nothing written): counts the reader would refuse, e.g. neurons whose spikes do
    not have their layer's output shape, or exit counts above the totals."""
    arrays = _arrays(counts, backend)
    if dataset:
        arrays["dataset"] = np.array(dataset)
    if exit is not None:
        arrays |= _exit_arrays(exit, counts)
        _read_exit(arrays, _layers_read(arrays, Path(path)), counts.samples, counts.timesteps,
                   Path(path))  # the reader's checks, before anything is written

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a handle: np.savez would append .npz to a name
            np.savez(handle, **arrays)

    return write_atomic(path, save)


def _arrays(counts: EventCounts, backend: str) -> dict[str, np.ndarray]:
    layers = [layer for layer in counts.layers if layer.geometry is not None]
    header = (np.array(RESULT_FORMAT), np.array(RESULT_VERSION, dtype=np.int64),
              np.array(backend), np.array(counts.samples, dtype=np.int64),
              np.array(counts.timesteps, dtype=np.int64),
              np.array([layer.name for layer in layers], dtype=str),
              np.array([layer.geometry.kind for layer in layers], dtype=str))
    arrays = dict(zip(RESULT_KEYS["header"], header, strict=True))
    if layers and layers[0].spiking_input:
        arrays["input_spikes"] = np.array(1, dtype=np.int64)
    for i, layer in enumerate(layers):
        spikes = layer.output_spikes
        if spikes is not None and np.size(spikes) != math.prod(layer.geometry.output_shape):
            raise NeuroKDError(f"layer {layer.name}: spikes of shape {np.shape(spikes)} do not "
                               f"fit its output {tuple(layer.geometry.output_shape)} (two neuron "
                               "layers, or a pool before them, cannot be written)")
        values = (layer.geometry.to_array(), np.array(layer.geometry.input_shape, dtype=np.int64),
                  np.asarray(layer.input_events, dtype=np.float64),
                  np.array(int(spikes is not None), dtype=np.int64),
                  None if spikes is None else np.asarray(spikes, dtype=np.float64))
        for key, value in zip(RESULT_KEYS["per_layer"], values, strict=True):
            if value is not None:
                arrays[key.format(i=i)] = value
    return arrays


def _exit_arrays(exit: ExitRun, counts: EventCounts) -> dict[str, np.ndarray]:
    totals = [layer for layer in counts.layers if layer.geometry is not None]
    layers = [layer for layer in exit.counts.layers if layer.geometry is not None]
    if [layer.name for layer in layers] != [layer.name for layer in totals]:
        raise NeuroKDError("the exit's counts are not of the run's layers: "
                           f"{[layer.name for layer in layers]} vs "
                           f"{[layer.name for layer in totals]}")
    arrays = {"exit_rule": np.array(exit.rule), "exit_threshold": np.array(float(exit.threshold)),
              "exit_steps": np.asarray(exit.steps, dtype=np.int64).reshape(-1)}
    for i, layer in enumerate(layers):
        events_key, spikes_key = (key.format(i=i) for key in EXIT_KEYS["per_layer"])
        arrays[events_key] = np.asarray(layer.input_events, dtype=np.float64)
        if layer.output_spikes is not None:
            arrays[spikes_key] = np.asarray(layer.output_spikes, dtype=np.float64)
    return arrays


@dataclass(frozen=True)
class SpikeCountFile:
    counts: EventCounts
    backend: str
    dataset: str | None     # None: written before the file recorded it
    exit: ExitRun | None = None  # None: the run stopped no sample early (or predates exits)


# A count per element is at most one spike per timestep (an event camera's count frames: at
# most 65535 events per pixel and frame); counts past that are forged, and 1e308 would overflow
# every sum made of them.
MAX_EVENTS_PER_FRAME = 1 << 16
MAX_FRAMES = 1 << 40  # samples x timesteps


def read_spike_counts(path: str | Path) -> tuple[EventCounts, str]:
    """The counts in a result file and its backend; anything off the contract is refused."""
    stored = read_spike_file(path)
    return stored.counts, stored.backend


def read_spike_file(path: str | Path) -> SpikeCountFile:
    """A result file, every array's header checked before it is read (``neurokd.files.npz``:
    sizes within the memory budget, no object arrays)."""
    path = Path(path)
    arrays = read_npz(path, "result file")
    missing = [key for key in RESULT_KEYS["header"] if key not in arrays]
    if missing or str(arrays.get("format")) not in (RESULT_FORMAT, *LEGACY_FORMATS):
        raise NeuroKDError(f"{path}: not a neurokd spike-count file (expected format "
                           f"{RESULT_FORMAT!r}" + (f"; lacks {', '.join(missing)}" if missing
                                                   else "") + ")")
    if _int(arrays, "version", path) != RESULT_VERSION:
        raise NeuroKDError(f"{path}: spike-count file version {arrays['version']} is not supported "
                           f"(this neurokd reads version {RESULT_VERSION})")
    samples, timesteps = _int(arrays, "samples", path), _int(arrays, "timesteps", path)
    layers = _layers_read(arrays, path)
    dataset = _texts(arrays, "dataset", path)[0] if "dataset" in arrays else None
    return SpikeCountFile(EventCounts(layers, samples, timesteps),
                          _texts(arrays, "backend", path)[0], dataset,
                          _read_exit(arrays, layers, samples, timesteps, path))


def _layers_read(arrays: dict, path: Path) -> list[LayerEvents]:
    """The totals' layers of ``arrays``, checked (the header's sizes first)."""
    samples, timesteps = _int(arrays, "samples", path), _int(arrays, "timesteps", path)
    if samples < 1 or timesteps < 1 or samples * timesteps > MAX_FRAMES:
        raise NeuroKDError(f"{path}: samples and timesteps must be >= 1, their product at most "
                           f"{MAX_FRAMES:,} (samples {samples:,}, timesteps {timesteps:,})")
    names, types = (_texts(arrays, key, path) for key in ("layer_names", "layer_types"))
    if len(names) != len(types) or not names:
        raise NeuroKDError(f"{path}: layer_names and layer_types must list the same layers")
    input_spikes = _int(arrays, "input_spikes", path) if "input_spikes" in arrays else 0
    if input_spikes not in (0, 1):
        raise NeuroKDError(f"{path}: input_spikes must be 0 or 1, not {input_spikes}")
    return [_layer(arrays, i, name, kind, samples * timesteps, path, bool(input_spikes))
            for i, (name, kind) in enumerate(zip(names, types, strict=True))]


def _is_exit_key(key: str) -> bool:
    return key in EXIT_KEYS["header"] or key.startswith(
        tuple(k.removesuffix("{i}") for k in EXIT_KEYS["per_layer"]))


def _read_exit(arrays: dict, layers: list[LayerEvents], samples: int, timesteps: int,
               path: Path) -> ExitRun | None:
    """The optional early exit (module docstring), checked against the totals ``layers``."""
    present = sorted(key for key in arrays if _is_exit_key(key))
    if not present:
        return None
    missing = [key for key in EXIT_KEYS["header"] if key not in arrays]
    if missing:
        raise NeuroKDError(f"{path}: has exit keys ({', '.join(present[:3])}) but lacks "
                           f"{', '.join(missing)}")
    from neurokd.anytime import EXIT_RULES, check_threshold

    rule = _texts(arrays, "exit_rule", path)
    if len(rule) != 1 or rule[0] not in EXIT_RULES:
        raise NeuroKDError(f"{path}: exit_rule {', '.join(rule)[:40]!r} is not one of "
                           f"{', '.join(EXIT_RULES)}")
    value = arrays["exit_threshold"]
    if value.size != 1 or value.dtype.kind not in "iuf":
        raise NeuroKDError(f"{path}: exit_threshold must be one number, not {value!r:.80}")
    try:
        threshold = check_threshold(rule[0], float(value.reshape(-1)[0]))
    except ConfigError as exc:
        raise NeuroKDError(f"{path}: exit_threshold: {exc}") from None
    steps = arrays["exit_steps"]
    if steps.dtype.kind not in "iu" or steps.shape != (samples,):
        raise NeuroKDError(f"{path}: exit_steps must be {samples} whole numbers (one per "
                           f"sample), not {steps.dtype} {steps.shape}")
    steps = steps.astype(np.int64)
    if not (1 <= int(steps.min()) and int(steps.max()) <= timesteps):
        raise NeuroKDError(f"{path}: exit_steps must lie in 1..{timesteps} (T), not "
                           f"{int(steps.min())}..{int(steps.max())}")
    frames = int(steps.sum())
    expected = set(EXIT_KEYS["header"])
    rows = []
    for i, total in enumerate(layers):
        events_key, spikes_key = (key.format(i=i) for key in EXIT_KEYS["per_layer"])
        events = _exit_counts(arrays, events_key, total.input_events, path)
        spikes = None if total.output_spikes is None else \
            _exit_counts(arrays, spikes_key, total.output_spikes, path)
        expected |= {events_key} | ({spikes_key} if spikes is not None else set())
        rows.append(LayerEvents(total.name, total.geometry, events, frames,
                                total.spiking_input,
                                0 if spikes is None else spikes.size * frames, spikes,
                                has_bias=total.has_bias))
    unexpected = sorted(set(present) - expected)
    if unexpected:
        raise NeuroKDError(f"{path}: {', '.join(unexpected[:3])} belong to no layer with "
                           "neurons of the file")
    return ExitRun(rule[0], threshold, steps, EventCounts(rows, samples, timesteps))


def _exit_counts(arrays: dict, key: str, totals: np.ndarray, path: Path) -> np.ndarray:
    """An exit count array: the totals' shape, finite, >= 0 and <= the totals."""
    if key not in arrays:
        raise NeuroKDError(f"{path}: has an exit but lacks {key}")
    value = arrays[key]
    totals = np.asarray(totals)
    if value.dtype.kind not in "iuf" or value.shape != totals.shape:
        raise NeuroKDError(f"{path}: {key} must hold counts of shape {totals.shape} (as its "
                           f"totals), not {value.dtype} {value.shape}")
    counts = np.asarray(value, dtype=np.float64)
    if not np.isfinite(counts).all() or counts.min(initial=0) < 0 or \
            bool((counts > totals).any()):
        raise NeuroKDError(f"{path}: {key} holds negative, non-finite counts or counts above "
                           "its totals (the frames up to each exit are a part of the run)")
    return counts


def _texts(arrays: dict, key: str, path: Path) -> list[str]:
    value = arrays[key]
    if value.dtype.kind != "U" or value.ndim > 1 or value.size == 0:
        raise NeuroKDError(f"{path}: {key} must be text, not {value.dtype} {value.shape}")
    return [str(v) for v in np.atleast_1d(value)]


def _int(arrays: dict, key: str, path: Path) -> int:
    value = arrays[key]
    if value.size != 1 or value.dtype.kind not in "iu":
        raise NeuroKDError(f"{path}: {key} must be one integer, not {value!r:.80}")
    return int(value.reshape(-1)[0])


def _layer(arrays: dict, i: int, name: str, kind: str, frames: int, path: Path,
           input_spikes: bool = False) -> LayerEvents:
    keys = [key.format(i=i) for key in RESULT_KEYS["per_layer"]]
    geometry_key, shape_key, events_key, neurons_key, spikes_key = keys
    missing = [key for key in keys[:4] if key not in arrays]
    if missing:
        raise NeuroKDError(f"{path}: layer {i} ({name}) lacks {', '.join(missing)}")
    if kind not in ("conv", "dense"):
        raise NeuroKDError(f"{path}: layer_types[{i}] ({name}) is {kind!r}, not conv or dense")
    geometry_values = arrays[geometry_key].ravel()
    if geometry_values.dtype.kind not in "iu":  # sizes, strides, paddings: whole numbers
        raise NeuroKDError(f"{path}: {geometry_key} of layer {i} ({name}) holds "
                           f"{geometry_values.dtype} values, not integers")
    expected = 11 if kind == "conv" else 2
    if len(geometry_values) != expected:
        raise NeuroKDError(f"{path}: {geometry_key} of a {kind} layer has "
                           f"{len(geometry_values)} numbers (expected {expected})")
    if arrays[shape_key].dtype.kind not in "iu" or arrays[shape_key].size > 8:
        raise NeuroKDError(f"{path}: {shape_key} of layer {i} ({name}) must list at most 8 "
                           f"integer sizes, not {arrays[shape_key].dtype} "
                           f"{arrays[shape_key].shape}")
    shape = tuple(int(d) for d in arrays[shape_key].ravel())
    try:
        geometry = LayerGeometry.from_array(kind, geometry_values, shape)
    except ValueError as exc:
        raise NeuroKDError(f"{path}: {geometry_key} of layer {i} ({name}): {exc}") from None
    for key in (events_key, spikes_key):
        if key in arrays and arrays[key].dtype.kind not in "iuf":
            raise NeuroKDError(f"{path}: {key} of layer {i} ({name}) holds {arrays[key].dtype} "
                               "values, not counts")
    events = np.asarray(arrays[events_key], dtype=np.float64)
    if events.shape != shape:
        raise NeuroKDError(f"{path}: {events_key} has shape {events.shape}, "
                           f"{shape_key} says {shape}")
    has_neurons = _int(arrays, neurons_key, path)
    if has_neurons not in (0, 1):
        raise NeuroKDError(f"{path}: {neurons_key} must be 0 or 1, not {has_neurons}")
    spikes = None
    if has_neurons:
        if spikes_key not in arrays:
            raise NeuroKDError(f"{path}: layer {i} ({name}) has neurons but no {spikes_key}")
        spikes = np.asarray(arrays[spikes_key], dtype=np.float64)
        if spikes.size != math.prod(geometry.output_shape):  # neuron updates count its size
            raise NeuroKDError(f"{path}: {spikes_key} has shape {spikes.shape}, layer {i} "
                               f"({name}) outputs {tuple(geometry.output_shape)}")
    for key, counts in ((events_key, events), (spikes_key, spikes)):
        if counts is not None and (not np.isfinite(counts).all() or counts.min(initial=0) < 0
                                   or counts.max(initial=0) > frames * MAX_EVENTS_PER_FRAME):
            raise NeuroKDError(f"{path}: {key} of layer {i} ({name}) holds negative, "
                               f"non-finite or impossible counts (over {MAX_EVENTS_PER_FRAME} "
                               f"per element and timestep of its {frames:,} sample steps)")
    updates = 0 if spikes is None else spikes.size * frames
    return LayerEvents(name, geometry, events, frames, i > 0 or input_spikes, updates, spikes,
                       has_bias=True)


def deployed_layout(backend: str, profile_layout: str) -> str:
    """The ``memory.LAYOUTS`` entry sizing a deployed run's accesses: Loihi's word sizes for
    the quantized network Lava ran (8-bit weights, 24-bit potentials), else the profile's."""
    return "loihi" if backend == "lava" else profile_layout
