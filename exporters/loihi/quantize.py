"""Loihi export, the quantization: one scale per layer from the registers it must fit.

``w = 2 * round(S g W / (2 s_x))`` (8-bit signed, stored doubled as slayer does, ``g = 1/tau``
or 1, ``s_x`` the input scale of the first layer, 1 for spikes), ``bias = round(S g b)``,
``vThMant = S * v_threshold`` (``S`` is rounded so this is an integer). ``S`` is the largest
value that keeps every weight in [-256, 254], the bias in 13 bits, the threshold in 17 bits, and
the worst-case synaptic sum inside Loihi's 24-bit current register. Analog input: graded
levels ``round(x * input_scale)`` (``_input_scale``); spike input: 0/1 as it comes, scale 1.
``exporters/loihi/export.py`` (its docstring) is the export around it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from neurokd.errors import NeuroKDError
from neurokd.student.geometry import LayerGeometry

from ..graph import LayerRecord
from .fixed_point import (
    DECAY_UNITY,
    MAX_ACTIVATION,
    MAX_BIAS_MANT,
    MAX_THRESHOLD_MANT,
    WEIGHT_MAX,
    WEIGHT_MIN,
    CubaNeuron,
    QuantizedLayer,
    QuantizedNetwork,
)


def layer_geometry(synapse: LayerRecord) -> LayerGeometry:
    return LayerGeometry.of_module(synapse.name, synapse.module, tuple(synapse.input_shape))


def quantize(chain, inputs: torch.Tensor, timesteps: int,
             spikes: bool = False) -> QuantizedNetwork:
    """One scale per layer (see the module docstring); analog ``inputs`` set the input range,
    spike inputs (``[T, N, ...]``) need none."""
    if spikes:
        input_scale, top, signed = 1.0, 1, False
    else:
        x = inputs.numpy().astype(np.float64)
        signed = bool(x.min() < 0)
        peak = float(np.abs(x).max()) or 1.0
        input_scale = _input_scale(*chain[0], peak, 127 if signed else 255)
        top = int(round(peak * input_scale))
    layers, in_scale, in_peak = [], input_scale, top
    for synapse, neuron in chain:
        layers.append(_quantize_layer(synapse, neuron, in_scale, in_peak))
        in_scale, in_peak = 1.0, 1
    return QuantizedNetwork(layers, tuple(inputs.shape[1 + spikes:]), timesteps, input_scale,
                            -top if signed else 0, top, spikes)


def _gain(neuron: LayerRecord | None) -> float:
    """The factor spikingjelly puts on the input current: 1/tau with ``decay_input``."""
    params = neuron.neuron if neuron else None
    return 1.0 / params.tau if params and params.model == "lif" and params.decay_input else 1.0


def _limits(synapse: LayerRecord, neuron: LayerRecord | None, in_scale: float,
            in_peak: float) -> dict[str, float]:
    """Upper bounds on the layer scale, one per Loihi register it must fit."""
    weight, bias = _weight_bias(synapse)
    gain, params = _gain(neuron), neuron.neuron if neuron else None
    fan_in = np.abs(weight).reshape(len(weight), -1).sum(1) * in_peak / in_scale
    limits = {
        "weights": WEIGHT_MAX * in_scale / (gain * np.abs(weight).max() or 1.0),
        "bias": MAX_BIAS_MANT / (gain * np.abs(bias).max() or 1e-30),
        "activation": 0.97 * MAX_ACTIVATION / (
            gain * float((fan_in + (0 if params else np.abs(bias))).max()) or 1e-30)}
    if params:
        limits["threshold"] = MAX_THRESHOLD_MANT / params.v_threshold
    return limits


def _input_scale(synapse: LayerRecord, neuron: LayerRecord | None, peak: float,
                 top: int) -> float:
    """Graded input levels per unit of x for the first layer.

    Its weights and its input share the precision the other registers leave: with
    ``S`` the layer scale, weights span ``S g max|W| / s`` and the input ``s * peak``
    levels. Equal bits for both (``s = sqrt(S g max|W| / peak)``), within 8-bit input and
    8-bit weights.
    """
    limits = _limits(synapse, neuron, 1.0, peak)
    limits.pop("weights")
    weight_span = min(limits.values()) * _gain(neuron) * float(np.abs(_weight_bias(synapse)[0])
                                                               .max() or 1.0)
    balanced = math.sqrt(weight_span / peak)
    return float(min(top / peak, max(balanced, weight_span / WEIGHT_MAX)))


def _weight_bias(synapse: LayerRecord) -> tuple[np.ndarray, np.ndarray]:
    weight = synapse.module.weight.detach().double().numpy()
    bias = synapse.module.bias
    return weight, np.zeros(len(weight)) if bias is None else bias.detach().double().numpy()


def _quantize_layer(synapse: LayerRecord, neuron: LayerRecord | None, in_scale: float,
                    in_peak: int) -> QuantizedLayer:
    weight, bias = _weight_bias(synapse)
    params = neuron.neuron if neuron else None
    gain = _gain(neuron)
    limits = _limits(synapse, neuron, in_scale, in_peak)
    binding = min(limits, key=limits.get)
    scale = limits[binding]
    shrunk = False
    while True:
        threshold = math.floor(params.v_threshold * scale) if params else MAX_THRESHOLD_MANT
        if params:
            scale = threshold / params.v_threshold  # the threshold is then exact
        raw = scale * gain * weight / in_scale
        w_int = np.clip(2 * np.rint(raw / 2), WEIGHT_MIN, WEIGHT_MAX).astype(np.int64)
        b_int = np.clip(np.rint(scale * gain * bias), -MAX_BIAS_MANT, MAX_BIAS_MANT)
        b_int = b_int.astype(np.int64)
        worst = np.abs(w_int).reshape(len(w_int), -1).sum(1) * in_peak
        worst = worst + (0 if params else np.abs(b_int))
        if worst.max() <= MAX_ACTIVATION or scale < 1e-6:
            break
        scale *= 0.95  # integer rounding pushed a sum over the limit: shrink a little
        shrunk = True
    if shrunk:  # the rounded sums, not the limit chosen first, set the scale
        binding = "activation"
    if params is not None and threshold < 1:
        raise NeuroKDError(f"cannot export to Loihi (netx): {synapse.name} needs a threshold "
                           "below one integer step at 8-bit weights; its weights or bias are "
                           "too large next to v_threshold")
    v_decay = 0 if not params or params.model == "if" else round(DECAY_UNITY / params.tau)
    cuba = CubaNeuron(DECAY_UNITY, v_decay if params else DECAY_UNITY, threshold)
    quantization = {"weight_range": (float(weight.min()), float(weight.max())),
              "int_range": (int(w_int.min()), int(w_int.max())),
              "clipped": float((np.abs(raw) > WEIGHT_MAX + 1).mean()),
              "bias_clipped": float((np.abs(scale * gain * bias) > MAX_BIAS_MANT + 0.5).mean()),
              "limit": binding, "threshold_mant": threshold if params else None}
    return QuantizedLayer(synapse.name, layer_geometry(synapse), w_int, b_int, cuba,
                          params is not None, scale=float(scale), quantization=quantization)
