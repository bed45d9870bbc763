"""The per-layer spike counts of a deployed run (``neurokd simulate``), as an ``.npz`` file.

Contract (written by ``neurokd simulate``; :func:`write_lava_result` writes the same from a
float run, which is how the tests and users can compare)::

    format="neurokd.lava-result", version=1, backend="lava"|"onnx", samples=N, timesteps=T,
    layer_names=str [L], layer_types=str [L] ("conv" | "dense"),
    geometry_{i}=int64: conv [out_ch, in_ch_per_group, kH, kW, sH, sW, pH, pW, dH, dW, groups];
                        dense [out_features, in_features]
    input_shape_{i}=int64 (C,H,W) or (N,)
    input_events_{i}=float64 of input_shape_{i}: events arriving at layer i summed over samples
        and timesteps (i=0: non-zero graded input values; i>0: spikes)
    has_neurons_{i}=0|1, output_spikes_{i}=float64 (when has_neurons_{i}=1)

Layer 0 sees graded input: it is priced as dense MACs, like the float estimate's encoding layer.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from neurokd.errors import NeuroKDError
from neurokd.fileio import write_atomic

from .count import EventCounts, LayerEvents, LayerGeometry

FORMAT = "neurokd.lava-result"
VERSION = 1
_HEADER = ("format", "version", "backend", "samples", "timesteps", "layer_names", "layer_types")


def read_lava_result(path: str | Path) -> tuple[EventCounts, str]:
    """The counts in a result file and its backend; anything off the contract is refused."""
    path = Path(path)
    if not path.is_file():
        raise NeuroKDError(f"no such result file: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise NeuroKDError(f"{path}: not a readable .npz file ({str(exc).splitlines()[0]})") \
            from None
    missing = [key for key in _HEADER if key not in arrays]
    if missing or str(arrays.get("format")) != FORMAT:
        raise NeuroKDError(f"{path}: not a neurokd lava result (expected format {FORMAT!r}"
                           + (f"; lacks {', '.join(missing)}" if missing else "") + ")")
    if _int(arrays, "version", path) != VERSION:
        raise NeuroKDError(f"{path}: lava result version {arrays['version']} is not supported "
                           f"(this neurokd reads version {VERSION})")
    samples, timesteps = _int(arrays, "samples", path), _int(arrays, "timesteps", path)
    if samples < 1 or timesteps < 1:
        raise NeuroKDError(f"{path}: samples and timesteps must be >= 1")
    names = [str(n) for n in np.atleast_1d(arrays["layer_names"])]
    types = [str(t) for t in np.atleast_1d(arrays["layer_types"])]
    if len(names) != len(types) or not names:
        raise NeuroKDError(f"{path}: layer_names and layer_types must list the same layers")
    layers = [_layer(arrays, i, name, kind, samples * timesteps, path)
              for i, (name, kind) in enumerate(zip(names, types, strict=True))]
    return EventCounts(layers, samples, timesteps), str(arrays["backend"])


def _int(arrays: dict, key: str, path: Path) -> int:
    value = arrays[key]
    if value.size != 1 or value.dtype.kind not in "iu":
        raise NeuroKDError(f"{path}: {key} must be one integer, not {value!r}")
    return int(value)


def _layer(arrays: dict, i: int, name: str, kind: str, frames: int, path: Path) -> LayerEvents:
    keys = [f"geometry_{i}", f"input_shape_{i}", f"input_events_{i}", f"has_neurons_{i}"]
    missing = [key for key in keys if key not in arrays]
    if missing:
        raise NeuroKDError(f"{path}: layer {i} ({name}) lacks {', '.join(missing)}")
    if kind not in ("conv", "dense"):
        raise NeuroKDError(f"{path}: layer {i} ({name}) has type {kind!r}, not conv or dense")
    geometry_values = arrays[f"geometry_{i}"].ravel()
    if len(geometry_values) != (11 if kind == "conv" else 2):
        raise NeuroKDError(f"{path}: geometry_{i} of a {kind} layer has "
                           f"{len(geometry_values)} numbers (expected {11 if kind == 'conv' else 2})")
    shape = tuple(int(d) for d in arrays[f"input_shape_{i}"].ravel())
    try:
        geometry = LayerGeometry.from_array(kind, geometry_values, shape)
    except ValueError as exc:
        raise NeuroKDError(f"{path}: layer {i} ({name}): {exc}") from None
    events = np.asarray(arrays[f"input_events_{i}"], dtype=np.float64)
    if events.shape != shape:
        raise NeuroKDError(f"{path}: input_events_{i} has shape {events.shape}, "
                           f"input_shape_{i} says {shape}")
    spikes = None
    if int(arrays[f"has_neurons_{i}"]):
        if f"output_spikes_{i}" not in arrays:
            raise NeuroKDError(f"{path}: layer {i} ({name}) has neurons but no output_spikes_{i}")
        spikes = np.asarray(arrays[f"output_spikes_{i}"], dtype=np.float64)
    if not np.isfinite(events).all() or events.min(initial=0) < 0 \
            or (spikes is not None and (not np.isfinite(spikes).all() or spikes.min(initial=0) < 0)):
        raise NeuroKDError(f"{path}: layer {i} ({name}) holds negative or non-finite counts")
    updates = 0 if spikes is None else spikes.size * frames
    return LayerEvents(name, geometry, events, frames, i > 0, updates, spikes)


def write_lava_result(path: str | Path, counts: EventCounts, backend: str = "lava") -> Path:
    """``counts`` (every layer with a geometry) in the contract above, written atomically."""
    layers = [layer for layer in counts.layers if layer.geometry is not None]
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT), "version": np.array(VERSION, dtype=np.int64),
        "backend": np.array(backend), "samples": np.array(counts.samples, dtype=np.int64),
        "timesteps": np.array(counts.timesteps, dtype=np.int64),
        "layer_names": np.array([layer.name for layer in layers]),
        "layer_types": np.array([layer.geometry.kind for layer in layers]),
    }
    for i, layer in enumerate(layers):
        arrays[f"geometry_{i}"] = layer.geometry.to_array()
        arrays[f"input_shape_{i}"] = np.array(layer.geometry.input_shape, dtype=np.int64)
        arrays[f"input_events_{i}"] = np.asarray(layer.input_events, dtype=np.float64)
        arrays[f"has_neurons_{i}"] = np.array(int(layer.output_spikes is not None), dtype=np.int64)
        if layer.output_spikes is not None:
            arrays[f"output_spikes_{i}"] = np.asarray(layer.output_spikes, dtype=np.float64)

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a handle: np.savez would append .npz to a name
            np.savez(handle, **arrays)

    return write_atomic(path, save)
