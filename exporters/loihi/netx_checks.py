"""What a ``.net`` file must hold before neurokd simulates or prices it (``netx_file.read_netx``).

A netx file is input like any other: its HDF5 tree is walked first (no links, no external or
virtual storage, array sizes within the memory budget: ``neurokd.files.hdf5``), then every
value is checked where it is read, and each failure names the file and the field:

- the ``neurokd.*`` metadata: timesteps, input shape and range, layer names and scales
  (the same bounds as a run's settings, ``neurokd.validation``);
- per layer: integer ``weight`` / ``bias`` datasets, weights in the 8-bit range the writer uses,
  the ``CUBA`` neuron's ``iDecay`` / ``vDecay`` in 0..4096 and ``vThMant`` in 1..2**17-1 (0
  only for a readout without neurons);
- the float twin (``/neurokd/float``): float arrays of finite values and neuron parameters
  with a threshold > 0 and finite time constants, all within ``MAX_FLOAT_VALUE`` (it runs in
  float32); scales within ``SCALE_RANGE``; what should be an array is an HDF5 dataset.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from neurokd.errors import NeuroKDError
from neurokd.text import first_line
from neurokd.validation import SIZE_LIMITS, check_shape

from .fixed_point import (
    DECAY_UNITY,
    MAX_ACTIVATION,
    MAX_BIAS_MANT,
    MAX_THRESHOLD_MANT,
    WEIGHT_MAX,
    WEIGHT_MIN,
)


class NetxFieldError(NeuroKDError):
    """One field of a netx file is off; ``read_netx`` prefixes the file's path."""


def check_meta(meta: dict[str, Any]) -> None:
    """The ``neurokd.*`` root attributes ``read_netx`` relies on."""
    check_input_meta(meta)
    _check_layer_meta(meta)


def check_input_meta(meta: dict[str, Any]) -> None:
    """T and the input's shape and quantization (the netx and the graph file share them)."""
    timesteps = meta.get("timesteps")
    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or \
            not 1 <= timesteps <= SIZE_LIMITS["timesteps"]:
        raise NetxFieldError(f"neurokd.timesteps must be a whole number in 1.."
                             f"{SIZE_LIMITS['timesteps']}, not {_short(timesteps)}")
    _shape("neurokd.input_shape", meta.get("input_shape"))
    scale = meta.get("input_scale")
    if not scale_ok(scale):
        raise NetxFieldError(f"neurokd.input_scale must be a finite number > 0 "
                             f"({SCALE_RANGE[0]:g}..{SCALE_RANGE[1]:g}), not {_short(scale)}")
    for key in ("input_min", "input_max"):
        value = meta.get(key)
        if not _whole(value) or abs(value) > MAX_ACTIVATION:
            raise NetxFieldError(f"neurokd.{key} must be a whole number with |value| <= "
                                 f"{MAX_ACTIVATION}, not {_short(value)}")
    if meta["input_min"] > meta["input_max"]:
        raise NetxFieldError(f"neurokd.input_max {meta['input_max']} is below "
                             f"neurokd.input_min {meta['input_min']}: the input range is empty")


def _check_layer_meta(meta: dict[str, Any]) -> None:
    names, scales, shapes = (meta.get(k) for k in ("layer_names", "layer_scales",
                                                   "layer_input_shapes"))
    if not isinstance(names, list) or not all(isinstance(n, str) and 0 < len(n) <= 256
                                              for n in names):
        raise NetxFieldError(f"neurokd.layer_names must be a list of names, not {_short(names)}")
    if not isinstance(scales, list) or not all(scale_ok(s) for s in scales):
        raise NetxFieldError(f"neurokd.layer_scales must be finite numbers > 0 "
                             f"({SCALE_RANGE[0]:g}..{SCALE_RANGE[1]:g}), not {_short(scales)}")
    if not isinstance(shapes, list):
        raise NetxFieldError(f"neurokd.layer_input_shapes must be a list of shapes, not "
                             f"{_short(shapes)}")
    for name, shape in zip(names, shapes, strict=False):
        _shape(f"neurokd.layer_input_shapes of layer {name}", shape)
    if not isinstance(meta.get("readout_has_neurons"), bool):
        raise NetxFieldError("neurokd.readout_has_neurons must be true or false, not "
                             f"{_short(meta.get('readout_has_neurons'))}")


def decode_meta(attrs) -> dict[str, Any]:
    """The ``neurokd.*`` root attributes, each a JSON text."""
    meta = {}
    for key, value in attrs.items():
        if not key.startswith("neurokd."):
            continue
        try:
            meta[key[len("neurokd."):]] = json.loads(value)
        except (ValueError, TypeError) as exc:
            raise NetxFieldError(f"{key} is not JSON ({first_line(exc)})") from None
        except RecursionError:
            raise NetxFieldError(f"{key} is JSON nested too deeply") from None
    return meta


def scalar(group, key: str, low: int, high: int, where: str) -> int:
    """A whole-number attribute dataset such as ``vThMant``, in ``low..high``."""
    dataset = group.get(key)
    if not is_dataset(dataset) or dataset.size != 1:
        raise NetxFieldError(f"{where} {key} must be one number")
    if dataset.dtype.kind not in "iub":
        raise NetxFieldError(f"{where} {key} must be a whole number, not {dataset.dtype}")
    value = int(np.asarray(dataset[()]).reshape(-1)[0])
    if not low <= value <= high:
        raise NetxFieldError(f"{where} {key} = {value} is outside {low}..{high}")
    return value


def neuron_values(group, where: str, spiking: bool) -> tuple[int, int, int]:
    """``iDecay``, ``vDecay``, ``vThMant`` of a ``CUBA`` neuron group."""
    decays = [scalar(group, key, 0, DECAY_UNITY, where) for key in ("iDecay", "vDecay")]
    threshold = scalar(group, "vThMant", 1 if spiking else 0, MAX_THRESHOLD_MANT, where)
    return decays[0], decays[1], threshold


def integer_array(dataset, where: str, low: int, high: int) -> np.ndarray:
    """An integer dataset (``weight``, ``bias``) read once its dtype is known, in range."""
    if not is_dataset(dataset):
        raise NetxFieldError(f"{where} must be an array (an HDF5 dataset)")
    if dataset.dtype.kind not in "iu":
        raise NetxFieldError(f"{where} must hold integers, not {dataset.dtype}")
    values = dataset[()].astype(np.int64)
    if values.size and (values.min() < low or values.max() > high):
        raise NetxFieldError(f"{where} holds {values.min()}..{values.max()}, outside "
                             f"{low}..{high}")
    return values


def float_array(dataset, where: str) -> np.ndarray:
    if not is_dataset(dataset):
        raise NetxFieldError(f"{where} must be an array (an HDF5 dataset)")
    if dataset.dtype.kind != "f":
        raise NetxFieldError(f"{where} must hold floats, not {dataset.dtype}")
    values = dataset[()]
    if not np.isfinite(values).all():
        raise NetxFieldError(f"{where} holds NaN or infinite values")
    if values.size and np.abs(values).max() > MAX_FLOAT_VALUE:
        raise NetxFieldError(f"{where} holds {np.abs(values).max():g}; the float network runs "
                             f"in float32 and takes |value| <= {MAX_FLOAT_VALUE:g}")
    return values


def neuron_params(params: Any, where: str) -> dict[str, Any] | None:
    """The float twin's neuron parameters: numbers finite, the threshold > 0."""
    if params is None:
        return None
    if not isinstance(params, dict):
        raise NetxFieldError(f"{where} neuron must be a table, not {_short(params)}")
    for key, value in params.items():
        if value is not None and not isinstance(value, bool | str) and (
                not _finite(value) or abs(value) > MAX_FLOAT_VALUE):
            raise NetxFieldError(f"{where} neuron {key} must be a finite number with |value| "
                                 f"<= {MAX_FLOAT_VALUE:g} (the float network runs in float32), "
                                 f"not {_short(value)}")
    if not _finite(params.get("v_threshold")) or params["v_threshold"] <= 0:
        raise NetxFieldError(f"{where} neuron v_threshold must be a number > 0, not "
                             f"{_short(params.get('v_threshold'))}")
    # numbers as floats: a whole number past int64 (tau = 10**19) would fail in torch's ops
    return {key: float(value) if _finite(value) else value for key, value in params.items()}


WEIGHT_RANGE = (WEIGHT_MIN, WEIGHT_MAX)
BIAS_RANGE = (-MAX_BIAS_MANT, MAX_BIAS_MANT)


def _shape(name: str, value: Any) -> None:
    try:
        check_shape(name, value)
    except NeuroKDError as exc:
        raise NetxFieldError(str(exc)) from None


def _finite(value: Any) -> bool:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # a JSON whole number past a float's range (10**400)
        return False


# The float twin's weights, biases and neuron numbers: its float32 sums over fan-in and time
# stay finite (a bias of 1e38 overflows them)
MAX_FLOAT_VALUE = 1e20

# A scale (integer units per float unit) outside this is no quantization a writer makes, and
# dividing by a denormal one (1e-320) overflows the logits to inf
SCALE_RANGE = (1e-30, 1e30)


def scale_ok(value: Any) -> bool:
    return _finite(value) and SCALE_RANGE[0] <= value <= SCALE_RANGE[1]


def is_dataset(value: Any) -> bool:
    """Whether an HDF5 tree's member is a dataset (not a group or a committed datatype,
    which a damaged tree may hold where an array should be)."""
    import h5py

    return isinstance(value, h5py.Dataset)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
