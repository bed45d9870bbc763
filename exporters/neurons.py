"""The spiking neurons the exporters understand, as data: :class:`NeuronParams`.

Only these spikingjelly classes, matched exactly (subclasses such as the adaptive or
learnable-threshold neurons have other dynamics): ``LIFNode``, ``IFNode``,
``ParametricLIFNode`` (a LIF whose ``1/tau`` is the learnt ``sigmoid(w)``, fixed in eval mode)
and ``CUBALIFNode`` (current-based LIF). :func:`neuron_steps` runs them with plain torch ops in
spikingjelly's own operation order, so its spikes are bit-identical to spikingjelly's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from spikingjelly.activation_based import neuron
from torch import nn

MODELS = ("lif", "if", "cubalif")


@dataclass(frozen=True)
class NeuronParams:
    """Discrete-time dynamics of one spiking layer, exactly as spikingjelly 2.0 computes them.

    ``lif``: ``h = v + (x - (v - v_reset)) / tau`` (``decay_input``) or
    ``h = v - (v - v_reset) / tau + x``; for a parametric LIF ``/ tau`` is ``* rate``
    (``rate = sigmoid(w)``, ``tau = 1 / rate``). ``if``: ``h = v + x``. ``cubalif``:
    ``c = c * c_decay + x``, ``h = v * v_decay + c``. Spike ``s = h >= v_threshold``; then
    ``v = v_reset`` (hard reset) or ``v = h - v_threshold`` (``v_reset is None``: soft).
    The membrane starts at ``v_reset`` (0 for soft reset), the current at 0. ``v_reset``
    inside the charge term is 0 for soft reset, as in spikingjelly.
    """

    model: str  # "lif" | "if" | "cubalif"
    v_threshold: float
    v_reset: float | None
    tau: float | None = None
    decay_input: bool = True
    rate: float | None = None       # parametric LIF: the factor it multiplies by (1/tau)
    c_decay: float | None = None    # cubalif: current decay per step
    v_decay: float | None = None    # cubalif: voltage decay per step

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"neuron model must be one of {', '.join(MODELS)}, not "
                             f"{self.model!r}")
        if self.model == "lif" and (self.tau is None or self.tau <= 1.0):
            raise ValueError(f"LIF tau must be > 1, not {self.tau!r}")
        if self.model == "cubalif" and not all(
                d is not None and 0.0 <= d < 1.0 for d in (self.c_decay, self.v_decay)):
            raise ValueError(f"CUBA-LIF decays must be in [0, 1), not {self.c_decay!r}, "
                             f"{self.v_decay!r}")

    @property
    def reset(self) -> str:
        return "soft" if self.v_reset is None else "hard"

    @property
    def v_initial(self) -> float:
        return 0.0 if self.v_reset is None else float(self.v_reset)


def neuron_params(module: nn.Module) -> NeuronParams | str:
    """The parameters of a spikingjelly neuron layer, or why it has none the exporters use."""
    if getattr(module, "step_mode", "m") != "m":
        return "single-step neuron inside a multi-step model"
    kind = type(module)
    v_reset = None if module.v_reset is None else float(module.v_reset)
    threshold = float(module.v_threshold)
    if kind is neuron.IFNode:
        return NeuronParams("if", threshold, v_reset)
    if kind is neuron.LIFNode:
        return NeuronParams("lif", threshold, v_reset, float(module.tau),
                            bool(module.decay_input))
    if kind is neuron.ParametricLIFNode:
        rate = float(module.w.detach().sigmoid())
        if not 0.0 < rate < 1.0:
            return f"ParametricLIFNode with 1/tau = sigmoid(w) = {rate}: tau must be > 1"
        return NeuronParams("lif", threshold, v_reset, 1.0 / rate, bool(module.decay_input),
                            rate=rate)
    if kind is neuron.CUBALIFNode:
        return NeuronParams("cubalif", threshold, v_reset, c_decay=float(module.c_decay),
                            v_decay=float(module.v_decay))
    return f"{kind.__name__}: a neuron model without an exporter"


def neuron_steps(x_seq: torch.Tensor, params: NeuronParams) -> torch.Tensor:
    """Spikes ``[T, ...]`` of one neuron layer, in spikingjelly's operation order (bit-exact)."""
    v = torch.full_like(x_seq[0], params.v_initial)
    current = torch.zeros_like(x_seq[0])
    spikes = []
    for x in x_seq.unbind(0):
        spike, v, current = neuron_step(x, v, current, params)
        spikes.append(spike)
    return torch.stack(spikes)


def neuron_step(x: torch.Tensor, v: torch.Tensor, current: torch.Tensor, params: NeuronParams
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One timestep of :func:`neuron_steps`: ``(spike, new v, new current)``, all shaped like
    ``x`` (``current`` is only read and changed by ``cubalif``). The stepwise ONNX export
    (exporters/onnx/stepwise.py) runs this once per call with ``v`` and ``current`` as state.

        >>> p = NeuronParams("if", 1.0, 0.0)
        >>> neuron_step(torch.tensor([1.5]), torch.zeros(1), torch.zeros(1), p)[0].tolist()
        [1.0]
    """
    leak_to = 0.0 if params.v_reset is None else params.v_reset
    if params.model == "if":
        h = v + x
    elif params.model == "cubalif":
        current = current * params.c_decay + x
        h = v * params.v_decay + current
    elif params.rate is not None:  # parametric LIF multiplies by sigmoid(w)
        h = (v + (x - (v - leak_to)) * params.rate if params.decay_input
             else v - (v - leak_to) * params.rate + x)
    elif params.decay_input:
        h = v + (x - (v - leak_to)) / params.tau
    else:
        h = v - (v - leak_to) / params.tau + x
    fired = h >= params.v_threshold
    if params.v_reset is None:
        v = torch.where(fired, h - params.v_threshold, h)
    else:
        v = torch.where(fired, torch.full_like(h, params.v_reset), h)
    return fired.to(x.dtype), v, current
