"""Loihi's fixed-point arithmetic for an exported network, bit for bit as Lava simulates it.

The integer model of the file ``exporters/loihi/export.py`` writes, computed the way lava-nc 0.10 /
lava-dl 0.6 run it with ``Loihi2SimCfg(select_tag="fixed_pt")``:

- synapses (``lava/proc/dense/models.py``, ``lava/proc/conv/models.py``): integer weights times
  input events (graded 8-bit values into the first layer of a network on analog input, 0/1
  spikes after it, and into the first layer too when the input is spikes: event frames or
  rate-coded data, a new 0/1 input per timestep). netx first
  re-scales dense weights (``netx.utils.optimize_weight_bits``: ``w << s`` with weight exponent
  ``-s``), Lava clips and truncates them and shifts the sum right by ``s``; conv sums wrap at
  24 bits. Both are replayed here rather than assumed exact.
- CUBA neurons (``lava/proc/lif/models.py``, ``PyLifModelBitAcc`` / ``PyLifResetModelBitAcc``):
  ``u = wrap24(u * (4096 - iDecay) >>0 12 + (a << 6))``,
  ``v = clip24(v * (4096 - vDecay) >>0 12 + u + (bias << 6))`` (``>>0``: shift of the
  magnitude, rounding toward zero), spike when ``v > vThMant << 6``, then ``v = 0``. netx passes
  ``du = iDecay - 1`` and Lava adds 1 back, so ``iDecay = 4096`` leaves no current memory.
- timing: every synapse delays by one step; ``lava_runner.py`` undoes that, so here step ``t``
  of every layer is step ``t`` of the sample, and every sample starts from ``u = v = 0``.

A readout layer without neurons is written with ``iDecay = vDecay = 4096`` and the largest
threshold: its ``v`` is then ``(a + bias) << 6`` at every step, the integer logit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from neurokd.errors import NeuroKDError
from neurokd.student.geometry import HasGeometry, LayerGeometry

DECAY_UNITY = 4096            # 12-bit decays: 4096 means "forget everything each step"
STATE_SHIFT = 6               # activation, bias and threshold are MSB-aligned by 6 bits
STATE_LIMIT = 1 << 23         # u and v are 24-bit signed registers
MAX_ACTIVATION = (1 << 17) - 1   # |a| << 6 must stay inside the 24-bit current register
MAX_THRESHOLD_MANT = (1 << 17) - 1
MAX_BIAS_MANT = 4095          # 13-bit signed bias mantissa
WEIGHT_MIN, WEIGHT_MAX = -256, 254   # 8-bit signed weights, stored doubled (even) as slayer does


@dataclass(frozen=True)
class CubaNeuron:
    """One netx ``CUBA`` neuron group (the integers written to the file)."""

    i_decay: int
    v_decay: int
    v_th_mant: int

    def __post_init__(self) -> None:
        if not 0 <= self.i_decay <= DECAY_UNITY or not 0 <= self.v_decay <= DECAY_UNITY:
            raise ValueError(f"decays must lie in 0..4096: {self}")
        if not 0 <= self.v_th_mant <= MAX_THRESHOLD_MANT:
            raise ValueError(f"threshold mantissa must lie in 0..{MAX_THRESHOLD_MANT}: {self}")


@dataclass
class QuantizedLayer(HasGeometry):
    """One synaptic layer with its neurons; shapes are per sample in C,H,W (or (N,)) order."""

    name: str                      # the student's module path (e.g. "features.0")
    geometry: LayerGeometry        # kind, shapes, stride / padding / dilation / groups
    weight: np.ndarray             # int64, as written (conv: out,in/groups,kH,kW; dense: out,in)
    bias: np.ndarray               # int64 bias mantissa per output channel / feature
    neuron: CubaNeuron
    spiking: bool                  # False: the readout, whose v is the logit
    scale: float = 1.0             # integer activation units per unit of the float membrane
    quantization: dict = field(default_factory=dict)  # float range, clipping, binding limit


@dataclass
class QuantizedNetwork:
    layers: list[QuantizedLayer]
    input_shape: tuple[int, ...]
    timesteps: int
    input_scale: float             # graded input value = round(x * input_scale), clipped
    input_min: int
    input_max: int
    input_spikes: bool = False     # the input is 0/1 spikes per timestep (1.0, 0..1 above)

    def __post_init__(self) -> None:
        if self.timesteps < 1:
            raise ValueError(f"timesteps must be >= 1, not {self.timesteps}")
        if self.input_min > self.input_max:
            raise ValueError(f"input range {self.input_min}..{self.input_max} is empty")
        if not self.layers:
            raise ValueError("no synaptic layers")

    def quantize_input(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        """The first layer's integer input: analog samples ``[N, ...]`` as 8-bit graded
        spikes, or, for a network on spikes, ``[T, N, ...]`` 0/1 spikes as ``[N, T, ...]``
        (nothing quantized: any other value is refused)."""
        x = np.asarray(x, dtype=np.float64)
        if not self.input_spikes:
            return np.clip(np.rint(x * self.input_scale), self.input_min,
                           self.input_max).astype(np.int64)
        if x.ndim != len(self.input_shape) + 2:
            shape = ", ".join(map(str, self.input_shape))
            raise NeuroKDError(f"a network on spikes takes [T, N, {shape}] inputs, not "
                               f"{list(x.shape)}")
        check_spikes(x)
        return x.swapaxes(0, 1).astype(np.int64)

    def logits(self, readout: np.ndarray) -> np.ndarray:
        """Per-step float logits from the readout's integer ``v`` (or its spikes)."""
        last = self.layers[-1]
        if last.spiking:
            return readout.astype(np.float64)
        return readout.astype(np.float64) / ((1 << STATE_SHIFT) * last.scale)


def check_spikes(x: np.ndarray | torch.Tensor) -> None:
    """Refuse inputs with a time axis that are not 0/1 (Loihi's input spikes are binary)."""
    x = np.asarray(x)
    if not np.isin(x, (0.0, 1.0)).all():
        raise NeuroKDError(f"cannot export to Loihi (netx): its input spikes are binary, but the "
                           f"inputs hold values up to {x.max():g} (event counts per pixel and "
                           "frame); train the student with --event-frames binary")


@dataclass
class FixedPointRun:
    spikes: list[np.ndarray]       # per spiking layer: uint8 [N, T, *output_shape]
    readout: np.ndarray            # int64 [N, T, K]: readout v (or spikes of a spiking last layer)
    saturated: int                 # v values that hit the 24-bit clip (0 in a healthy export)

    def first(self, count: int) -> FixedPointRun:
        """The run of the first ``count`` samples (every sample starts from rest, so this is
        what running them alone gives; ``saturated`` stays the whole run's)."""
        return FixedPointRun([s[:count] for s in self.spikes], self.readout[:count],
                             self.saturated)


def wrap24(values: np.ndarray) -> np.ndarray:
    return (values + STATE_LIMIT) % (2 * STATE_LIMIT) - STATE_LIMIT


def decay(state: np.ndarray, decay_value: int) -> np.ndarray:
    """``state * (4096 - d) >> 12`` on the magnitude, as Lava's fixed-point LIF does."""
    product = state * (DECAY_UNITY - decay_value)
    return np.sign(product) * (np.abs(product) >> 12)


def lava_dense_weights(weight: np.ndarray) -> tuple[np.ndarray, int]:
    """What Lava's Dense finally multiplies with, and the right shift it applies to the sum.

    netx's ``optimize_weight_bits`` (scale into the 8-bit range, count the weight bits), then
    Lava's ``determine_sign_mode`` / ``clip_weights`` / ``truncate_weights`` on the result.
    """
    w = weight.astype(np.int64)
    if w.max() > 254 and w.min() < 0 or w.min() < -256 and w.max() > 0:
        w = np.clip(w, -256, 254)
    w_max, w_min = int(w.max()), int(w.min())
    mixed = not (w_max < 0 or w_min >= 0)
    if mixed:
        scale = min(127 / w_max if w_max > 0 else np.inf, -128 / w_min)
    elif w_max < 0:
        scale = -256 / w_min
    else:
        scale = 255 / w_max if w_max > 0 else 1.0
    scale_bits = int(np.floor(np.log2(scale))) + int(mixed)
    n = 8
    while n > 0 and np.abs(w / 2 ** n - np.round(w / 2 ** n)).sum() != 0:
        n -= 1
    num_bits = 8 - scale_bits - (n - int(mixed))
    w = w << scale_bits if scale_bits >= 0 else w >> -scale_bits
    # Lava decides the sign mode again, on the shifted weights
    lava_mixed = bool(w.min() < 0 < w.max())
    inhibitory = bool(w.min() < 0 and w.max() <= 0)
    sign = -1 if inhibitory else 1
    w = np.clip(w * sign, -(2 ** 8) * int(lava_mixed), 2 ** 8 - 1)
    cut = 8 - num_bits + int(lava_mixed)
    return ((w >> cut) << cut) * sign, scale_bits


def synaptic_input(layer: QuantizedLayer, events: np.ndarray,
                   dense_cache: dict[str, tuple[np.ndarray, int]]) -> np.ndarray:
    """Integer activation ``a`` of ``layer`` for input events ``[N, *input_shape]``."""
    if layer.kind == "dense":
        if layer.name not in dense_cache:
            dense_cache[layer.name] = lava_dense_weights(layer.weight)
        weight, shift = dense_cache[layer.name]
        total = events.reshape(len(events), -1).astype(np.int64) @ weight.T
        return total << -shift if shift < 0 else total >> shift
    # float64 holds these integer sums exactly (far below 2**53); Lava wraps them at 24 bits
    result = F.conv2d(torch.from_numpy(events.astype(np.float64)),
                      torch.from_numpy(layer.weight.astype(np.float64)), stride=layer.stride,
                      padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
    return wrap24(result.round().to(torch.int64).numpy())


def run_fixed_point(network: QuantizedNetwork, inputs: np.ndarray) -> FixedPointRun:
    """The network on integer inputs: graded ``[N, *input_shape]`` (the same at every step)
    or spikes ``[N, T, *input_shape]`` (``network.input_spikes``)."""
    count, steps = len(inputs), network.timesteps
    states = [(np.zeros((count, *lay.output_shape), np.int64),
               np.zeros((count, *lay.output_shape), np.int64)) for lay in network.layers]
    spikes = [np.zeros((count, steps, *lay.output_shape), np.uint8)
              for lay in network.layers if lay.spiking]
    readout = np.zeros((count, steps, *network.layers[-1].output_shape), np.int64)
    cache: dict[str, tuple[np.ndarray, int]] = {}
    saturated = 0
    for t in range(steps):
        events, spiking_index = (inputs[:, t] if network.input_spikes else inputs), 0
        for index, lay in enumerate(network.layers):
            u, v = states[index]
            bias = lay.bias.reshape((-1,) + (1,) * (len(lay.output_shape) - 1))
            a = synaptic_input(lay, events, cache)
            u = wrap24(decay(u, lay.neuron.i_decay) + (a << STATE_SHIFT))
            v = decay(v, lay.neuron.v_decay) + u + (bias << STATE_SHIFT)
            saturated += int((np.abs(v) >= STATE_LIMIT).sum())
            v = np.clip(v, -STATE_LIMIT + 1, STATE_LIMIT - 1)
            fired = v > (lay.neuron.v_th_mant << STATE_SHIFT)
            if lay.spiking:
                spikes[spiking_index][:, t] = fired
                spiking_index += 1
            elif index == len(network.layers) - 1:
                readout[:, t] = v
            v = np.where(fired, 0, v)
            states[index] = (u, v)
            events = fired.astype(np.int64)
        if network.layers[-1].spiking:
            readout[:, t] = spikes[-1][:, t]
    return FixedPointRun(spikes, readout, saturated)
