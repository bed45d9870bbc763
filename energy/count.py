"""Per-layer operation counts of a spiking network on real inputs.

How the counting works, and what spikingjelly's ``op_counter`` is used for:

* One forward pass per batch with forward hooks on every conv/linear layer and every
  spikingjelly neuron. A synaptic layer's hook adds its input *event map* (non-zero values per
  input position, summed over timesteps and samples) to an accumulator; a neuron's hook adds
  its spikes per position. Nothing else runs per batch.
* After the last batch, SOPs come from the event map and the layer geometry alone
  (:func:`synops`): for a conv, one ones-kernel convolution of the map gives, per output
  position, the events inside its receptive field; summed and times ``out_channels / groups``
  that is exactly "input spikes x fan-out", borders, strides, dilation and groups included
  (zero padding holds no events). For a dense layer it is ``events x out_features``. The same
  function prices the spike counts a deployed run recorded (``energy.spike_counts``).
* ``op_counter.SynOpCounter`` computes the same quantity per aten op (a ones-kernel
  convolution of every binary input tensor, ``nnz x out`` for matmuls) and its numbers are
  right: the tests hold our counts equal to it. It is not used per batch because
  ``DispatchCounterMode`` intercepts every aten op (the neurons' elementwise ops too) and checks
  each operand for being binary, which costs more than the forward pass itself on small
  students (see benchmarks/results/energy.md), and because a deployed run's spike-count file
  has no tensors to dispatch. ``op_counter.MACCounter`` is not used for the ANN reference: it
  counts 0 MACs for any operand that happens to hold only 0/1 values (a binarised image, a ReLU
  layer that output all zeros), while an ANN multiplies regardless; ANN MACs here are fan-in x
  outputs.
* A layer whose input held only 0/1 values over the whole run is a synaptic (spiking) layer;
  any other input (the encoding layer's analog frames, average-pooled spikes) is priced as
  dense MACs, fan-in x outputs per timestep, because that is what the hardware multiplies.
  (The test is on values, as op_counter's is: an input that stayed all zero, e.g. average-pooled
  spikes of a silent network, counts as spiking with 0 SOPs rather than as dense MACs.)
  Inputs with a time axis (``[T, B, ...]``: event frames, rate-coded spikes) are events in
  every layer: a frame holding k events at a pixel (``--event-frames counts``) is k events
  there, k x fan-out SOPs, not an analog value.
* Each neuron layer belongs to the synaptic layer that ran last before it (the conv before its
  BatchNorm, the last conv before a residual addition): ``neurokd.student.layers``, the rule
  every per-layer number of neurokd names its layers by. Neuron updates = neurons x timesteps;
  an update is *active* when the neuron spiked in that timestep (Loihi prices those higher).

This module records events (:class:`LayerEvents`); ``quantities.py`` turns them into the counted
quantities and ``pricing.py`` prices those. docs/energy.md tells the whole story.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch
from spikingjelly.activation_based import functional, neuron
from torch import nn

from neurokd.data.encoding import unwrap_encoding
from neurokd.errors import NeuroKDError
from neurokd.student.geometry import LayerGeometry
from neurokd.student.layers import NeuronOwners

from .events import EventCounts, LayerEvents, synops  # noqa: F401 - the counter's records

_SYNAPTIC = (nn.Conv1d, nn.Conv2d, nn.Linear)
_BATCH_NORM = nn.modules.batchnorm._BatchNorm
_UNCOUNTABLE = (nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
                nn.Bilinear)


@dataclass
class _Accumulator:
    name: str
    geometry: LayerGeometry | None = None
    events: torch.Tensor | None = None
    frames: int = 0
    spiking: bool = True
    neuron_updates: int = 0
    has_bias: bool = False
    neuron_names: list[str] = field(default_factory=list)
    spikes: list[torch.Tensor] = field(default_factory=list)

    def done(self) -> LayerEvents:
        events = None if self.events is None else self.events.cpu().numpy()
        spikes = None
        if self.spikes:  # two neuron layers after one synaptic layer: one flat array
            spikes = (self.spikes[0] if len(self.spikes) == 1
                      else torch.cat([s.flatten() for s in self.spikes])).cpu().numpy()
        return LayerEvents(self.name, self.geometry, events, self.frames,
                           self.spiking and self.events is not None, self.neuron_updates, spikes,
                           self.has_bias)


class EventRecorder:
    """Forward hooks that fill one :class:`_Accumulator` per synaptic layer (see module doc)."""

    def __init__(self, root: nn.Module):
        self.layers: dict[str, _Accumulator] = {}
        self._owners = NeuronOwners()  # which layer each neuron module belongs to
        self._handles = []
        # Inputs with a time axis are events: a count k at a position is k events.
        self.event_counts = False
        # Off while another recorder on the same model counts a pass (the exit's two passes).
        self.active = True
        # bool [T*B], time-major: the frames counted (a sample's steps up to its exit); the
        # student is causal, so these frames are exactly those of a run stopped there.
        self.frame_mask: torch.Tensor | None = None
        bad = [f"{n} ({type(m).__name__})" for n, m in root.named_modules()
               if isinstance(m, _UNCOUNTABLE)]
        if bad:
            raise NeuroKDError(f"cannot count operations of {', '.join(bad)}: only conv1d, "
                               "conv2d and linear layers are synaptic layers here")
        for name, module in root.named_modules():
            if isinstance(module, _SYNAPTIC):
                hook = self._synaptic_hook(name or type(module).__name__)
            elif isinstance(module, neuron.BaseNode):
                hook = self._neuron_hook(name or type(module).__name__)
            elif isinstance(module, _BATCH_NORM):
                hook = self._batch_norm_hook
            else:
                continue
            self._handles.append(module.register_forward_hook(hook))

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _accumulator(self, name: str) -> _Accumulator:
        if name not in self.layers:
            self.layers[name] = _Accumulator(name)
        return self.layers[name]

    def _kept(self, flat: torch.Tensor, name: str) -> torch.Tensor:
        """``flat`` ([T*B, ...], time-major) reduced to the frames of :attr:`frame_mask`."""
        if self.frame_mask is None:
            return flat
        if flat.shape[0] != self.frame_mask.numel():
            raise NeuroKDError(
                f"cannot price an early exit: layer {name} ran on {flat.shape[0]} frames per "
                f"batch, not timesteps x samples = {self.frame_mask.numel()} (a layer outside "
                "the time loop)")
        return flat[self.frame_mask.to(flat.device)]

    def _synaptic_hook(self, name: str):
        def hook(module, args, _out):
            if not self.active:
                return
            x = args[0].detach()
            rank = 1 if isinstance(module, nn.Linear) else module.weight.dim() - 1
            per_sample = tuple(x.shape[-rank:])
            flat = self._kept(x.reshape(-1, *per_sample), name)
            acc = self._accumulator(name)
            if acc.geometry is None:
                acc.geometry = LayerGeometry.of_module(name, module, per_sample)
                acc.has_bias = acc.has_bias or module.bias is not None
                acc.events = torch.zeros(acc.geometry.input_shape, dtype=torch.float64,
                                         device=x.device)
            if acc.spiking:
                acc.spiking, counts = _binary_counts(flat)
                if not acc.spiking and self.event_counts:
                    acc.spiking, counts = _event_counts(flat)
            if not acc.spiking:  # analog input: count its non-zero values (a slower pass)
                counts = torch.count_nonzero(flat, dim=0)
            acc.events += counts.reshape(acc.events.shape)
            acc.frames += flat.shape[0]
            self._owners.synapse(name)
        return hook

    def _batch_norm_hook(self, _module, _args, _out) -> None:
        # Folded into the synaptic layer before it at inference: that layer gets a bias.
        if self.active and self._owners.last is not None:
            self._accumulator(self._owners.last).has_bias = True

    def _neuron_hook(self, name: str):
        def hook(module, _args, out):
            if not self.active:
                return
            out = out.detach()
            lead = 2 if getattr(module, "step_mode", "s") == "m" else 1
            per_sample = tuple(out.shape[lead:])
            owner = self._owners.neuron(name)
            acc = self._accumulator(owner)
            flat = self._kept(out.reshape(-1, *per_sample), name)
            spikes = flat.sum(0).double()  # float32 is exact per batch (< 2**24 steps)
            if name not in acc.neuron_names:
                acc.neuron_names.append(name)
                acc.spikes.append(torch.zeros_like(spikes))
            acc.spikes[acc.neuron_names.index(name)] += spikes
            acc.neuron_updates += flat.numel()
        return hook


def _event_counts(flat: torch.Tensor) -> tuple[bool, torch.Tensor | None]:
    """``(True, events per position)`` when ``flat`` holds whole numbers >= 0 (event frames
    holding counts: k events at a pixel are k events), else ``(False, None)``."""
    if bool(flat.min() < 0) or not bool(torch.equal(flat, flat.round())):
        return False, None
    return True, flat.sum(0, dtype=torch.float64)


def _binary_counts(flat: torch.Tensor) -> tuple[bool, torch.Tensor | None]:
    """``(True, spikes per position)`` when ``flat`` holds only 0 and 1, else ``(False, None)``.

    Counting non-zeros costs ~8x a plain sum on CPU, so spikes are summed instead, after a
    check that is cheap and exact for 0/1 data: all values in [0, 1] and sum(x^2) == sum(x)
    (x^2 < x for every value strictly between 0 and 1). Both sums of 0/1 values are exact in
    float32 per chunk of 2**24 values. Non-binary data whose sum(x - x^2) is below float32
    rounding (values within ~1e-7 of 0 or 1) would pass as spikes; nothing real looks so.
    """
    low, high = torch.aminmax(flat)
    if bool(low < 0) or bool(high > 1):
        return False, None
    per_position = flat.sum(0)
    values = flat.reshape(-1)
    squares = sum(float(torch.dot(part, part)) for part in values.split(2 ** 24))
    if squares != float(per_position.sum(dtype=torch.float64)):
        return False, None
    return True, per_position


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the block, each module's own mode again after it.

    The caller's model is counted in place: a deep copy costs as much as the hooks do on a
    small student.
    """
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes.items():
            module.training = training


def iter_batches(inputs, batch_size: int = 128) -> Iterator[torch.Tensor]:
    """Tensors from a tensor (split into batches) or an iterable of tensors / (x, y, ...)."""
    if isinstance(inputs, torch.Tensor):
        yield from inputs.split(batch_size)
        return
    if not isinstance(inputs, Iterable):
        raise NeuroKDError(f"inputs must be a tensor or an iterable of batches, not "
                           f"{type(inputs).__name__}")
    for batch in inputs:
        x = batch[0] if isinstance(batch, list | tuple) else batch
        if not isinstance(x, torch.Tensor):
            raise NeuroKDError(f"an input batch is a {type(x).__name__}, not a tensor")
        yield x


def count_events(model: nn.Module, inputs, input_shape: tuple[int, ...] | None = None,
                 progress=None, outputs: list | None = None) -> EventCounts:
    """Run ``model`` (eval mode, no grad) over ``inputs`` and return its per-layer counts.

    ``progress(n)`` is called with each batch's sample count. Inputs of one more axis than
    ``input_shape`` are static ``[B, ...]``; two more, ``[T, B, ...]`` event data.
    ``outputs``: a list that gets ``(output, labels or None)`` of every batch (cpu), for the
    accuracy by timestep of the same pass.
    """
    recorder = EventRecorder(unwrap_encoding(model))
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    samples = 0
    try:
        with torch.no_grad():
            for x, y in iter_labelled(inputs):
                x = x.float().to(device)
                static = input_shape is None or x.dim() == len(input_shape) + 1
                recorder.event_counts = not static
                functional.reset_net(model)
                out = model(x)
                if outputs is not None:
                    outputs.append((out.float().cpu(), None if y is None else y.cpu()))
                batch = x.shape[0] if static else x.shape[1]
                samples += batch
                if progress is not None:
                    progress(batch)
    finally:
        recorder.remove()
        functional.reset_net(model)
    return _event_counts_of(recorder, samples)


def _event_counts_of(recorder: EventRecorder, samples: int,
                     timesteps: int | None = None) -> EventCounts:
    if not samples:
        raise NeuroKDError("no input samples to count on")
    layers = [acc.done() for acc in recorder.layers.values()]
    if not any(layer.geometry is not None for layer in layers):
        raise NeuroKDError("the model has no conv or linear layer to count")
    first = next(layer for layer in layers if layer.geometry is not None)
    return EventCounts(layers, samples, timesteps or max(1, round(first.frames / samples)))


@dataclass(frozen=True)
class ExitCounts:
    """One run counted twice: every sample for all T steps (``full``) and each sample only up to
    its exit step (``exited``: the same :class:`EventCounts`, so every quantity, energy model
    and profile prices it unchanged; its ``timesteps`` stays T). ``steps`` [N] in 1..T,
    ``logits`` [T, N, K] (cpu), ``labels`` [N] or None when the inputs carried none."""

    full: EventCounts
    exited: EventCounts
    steps: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor | None


def iter_labelled(inputs, batch_size: int = 128
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """``(x, y)`` from what :func:`iter_batches` takes; ``y`` is None for bare tensors."""
    if isinstance(inputs, torch.Tensor) or not isinstance(inputs, Iterable):
        for x in iter_batches(inputs, batch_size):
            yield x, None
        return
    for batch in inputs:
        labelled = isinstance(batch, list | tuple) and len(batch) > 1 \
            and isinstance(batch[1], torch.Tensor)
        for x in iter_batches([batch]):
            yield x, (batch[1] if labelled else None)


def count_events_with_exit(model: nn.Module, inputs, rule, threshold: float,
                           input_shape: tuple[int, ...] | None = None,
                           progress=None) -> ExitCounts:
    """:func:`count_events` at full T and up to each sample's exit step under ``rule``
    (a name of ``neurokd.anytime.EXIT_RULES``) at ``threshold``.

    Each batch runs twice: once at full T (its logits ``[T, B, K]`` give the exit steps
    ``e_b``), then again counting only the frames ``t < e_b`` of each sample. The student is
    causal (step t reads steps 1..t only), so those frames are exactly what running sample b
    for ``e_b`` steps produces: the exit's energy is that of the shorter runs, not an estimate.

        >>> # counts = count_events_with_exit(student, x, "confidence", 0.9)
        >>> # counts.exited.layers[0].frames == int(counts.steps.sum())
    """
    from neurokd.anytime import check_threshold, exit_steps, get_rule

    rule = get_rule(rule)
    threshold = check_threshold(rule, threshold)
    root = unwrap_encoding(model)
    full, exited = EventRecorder(root), EventRecorder(root)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    samples, all_steps, all_logits, all_labels = 0, [], [], []
    try:
        with torch.no_grad():
            for x, y in iter_labelled(inputs):
                x = x.float().to(device)
                static = input_shape is None or x.dim() == len(input_shape) + 1
                full.event_counts = exited.event_counts = not static
                full.active, exited.active = True, False
                functional.reset_net(model)
                logits = model(x)
                if logits.dim() != 3:
                    raise NeuroKDError(f"an early exit needs the student's per-timestep logits "
                                       f"[T, B, K], not {list(logits.shape)}")
                steps = exit_steps(rule, logits, threshold)
                timesteps, batch = logits.shape[:2]
                exited.frame_mask = (torch.arange(timesteps, device=steps.device).view(-1, 1)
                                     < steps.view(1, -1)).reshape(-1)
                full.active, exited.active = False, True
                functional.reset_net(model)
                model(x)
                samples += batch
                all_steps.append(steps.cpu())
                all_logits.append(logits.float().cpu())
                all_labels.append(None if y is None else y.cpu())
                if progress is not None:
                    progress(batch)
    finally:
        full.remove()
        exited.remove()
        functional.reset_net(model)
    counts = _event_counts_of(full, samples)
    labels = None if not all_labels or any(y is None for y in all_labels) \
        else torch.cat(all_labels)
    return ExitCounts(counts, _event_counts_of(exited, samples, counts.timesteps),
                      torch.cat(all_steps), torch.cat(all_logits, dim=1), labels)
