"""Loihi export: the student as a lava-dl netx HDF5 file in Loihi's integer arithmetic.

Mapping (spikingjelly 2.0 -> netx ``CUBA``). spikingjelly's LIF with ``decay_input`` charges
``h = v (1 - 1/tau) + (W x + b) / tau``; CUBA with ``iDecay = 4096`` has no current memory, so
``v = v (4096 - vDecay) / 4096 + a + bias`` with ``vDecay = round(4096 / tau)`` and the ``1/tau``
folded into the integer weights and bias (IF: ``vDecay = 0``; ``decay_input=False``: no
``1/tau``). Hard reset to 0 is CUBA's reset. BatchNorm is folded into the conv/linear before it.

Quantization, one scale ``S`` per layer (integer units per unit of the float membrane):
``w = 2 * round(S g W / (2 s_x))`` (8-bit signed, stored doubled as slayer does, ``g = 1/tau``
or 1, ``s_x`` the input scale of the first layer, 1 for spikes), ``bias = round(S g b)``,
``vThMant = S * v_threshold`` (``S`` is rounded so this is an integer). ``S`` is the largest
value that keeps every weight in [-256, 254], the bias in 13 bits, the threshold in 17 bits, and
the worst-case synaptic sum inside Loihi's 24-bit current register (``|a| << 6 < 2**23``). The
readout (the last linear layer, without neurons) gets ``iDecay = vDecay = 4096`` and the largest
threshold: its ``v`` each step is the integer logit.

Analog input: the first layer receives graded 8-bit spikes (``netx.hdf5.Network(...,
input_message_bits=8)``), the input quantized as ``round(x * input_scale)``, at most 255
levels over the largest ``x`` of the check inputs (127 for signed data); ``_input_scale``
splits the first layer's precision evenly between input levels and weight levels.

Average pools with non-overlapping windows are folded into the conv/linear after them
(``pool_fold.py``). Refused, naming the layers: residual additions, max pooling and average
pools that do not fold, soft reset, ``v_reset != 0``,
neuron layers on the raw input or two in a row, and synaptic layers without neurons between
them (except the readout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from neurokd.errors import NeuroKDError
from neurokd.fileio import atomic_path
from neurokd.progress import Reporter
from neurokd.sources import StudentSource

from .fixed_point import (
    DECAY_UNITY,
    MAX_ACTIVATION,
    MAX_BIAS_MANT,
    MAX_THRESHOLD_MANT,
    WEIGHT_MAX,
    WEIGHT_MIN,
    CubaNeuron,
    FixedPointRun,
    QuantizedLayer,
    QuantizedNetwork,
    run_fixed_point,
)
from .graph import LayerRecord, StudentGraph, fold_batchnorm, trace_student
from .netx_file import FloatLayer, conv_geometry, read_netx, run_float, write_netx
from .pool_fold import fold_average_pools
from .verify import as_source, eager_run, labelled_inputs, private_copy, verification_inputs

LOIHI_KINDS = ("conv", "linear", "flatten", "neuron")
INPUT_MESSAGE_BITS = 8


@dataclass
class LoihiExportResult:
    path: Path
    layers: list[QuantizedLayer]    # scale, integer ranges and clipping in ``layer.report``
    timesteps: int
    input_shape: tuple[int, ...]
    input_scale: float
    verified_on: str
    samples: int
    argmax_agreement: float         # quantized (Loihi fixed point) vs float
    spike_agreement: dict[str, float]   # per neuron layer: share of identical spikes
    float_accuracy: float | None    # on the check inputs, when they carry labels
    quantized_accuracy: float | None
    file_bytes: int
    encoding: str = "graded 8-bit input spikes into the first layer"
    folded_pools: list[str] = field(default_factory=list)   # merged into the next layer
    calibrated_on: str = ""         # the inputs that set the input quantization range
    lava_samples: int = 0           # samples run in Lava (netx) with spikes equal to the model
    lava_skipped: str | None = None  # why Lava did not check the file (no .venv-lava)
    saturated: int = 0              # membrane values clipped at 24 bits on the check inputs


def export_loihi(source: StudentSource | nn.Module | str | Path, path: str | Path,
                 max_samples: int = 512, min_agreement: float = 0.5,
                 input_shape: tuple[int, ...] | None = None,
                 timesteps: int | None = None, lava_samples: int = 32,
                 reporter: Reporter | None = None) -> LoihiExportResult:
    """Quantize, write ``path`` atomically, read it back and check it before renaming.

    Two checks on what the file holds. In Loihi fixed point here, against the float student:
    raises (nothing written) when the integer network predicts the float network's class on
    fewer than ``min_agreement`` of the check inputs (the default only catches broken files:
    an under-trained student with near-tied logits can flip 10% of its predictions under 8-bit
    weights while its accuracy stays put). And, when ``.venv-lava`` exists, in Lava itself
    (lava-dl netx, ``Loihi2SimCfg(select_tag="fixed_pt")``) on the first ``lava_samples``
    check inputs: every spike and readout value must equal the integer model's, else nothing
    is written. ``lava_samples=0`` skips the Lava check.
    """
    source = as_source(source, input_shape, timesteps)
    model = private_copy(source.model)
    graph = trace_student(model, source.input_shape, source.timesteps)
    chain, folded_pools = loihi_chain(graph)
    inputs, labels, described = labelled_inputs(source, max_samples)
    calibration, calibrated_on = verification_inputs(source, max_samples, split="train")
    float_layers = [_float_layer(syn, neu) for syn, neu in chain]
    network = quantize(chain, calibration, source.timesteps)
    reference_logits, _ = eager_run(model, [])(inputs)
    config = source.config or {}
    meta = {"dataset": config.get("dataset"), "data_dir": config.get("data_dir"),
            "image_size": config.get("image_size", 32), "source": source.label,
            "num_classes": int(reference_logits.shape[-1]),
            "class_names": list(source.class_names or [])}
    with atomic_path(path) as tmp:
        write_netx(tmp, network, float_layers, meta)
        written = read_netx(tmp)  # the check runs on what the file holds, not on memory
        check = compare_fixed_point(written.network, written.float_layers, inputs, labels)
        if check.argmax_agreement < min_agreement:
            raise NeuroKDError(
                f"Loihi export: the 8-bit integer network predicts the float network's class "
                f"on only {check.argmax_agreement:.1%} of {len(inputs)} samples (need "
                f"{min_agreement:.0%}); nothing written")
        lava_skipped = check_in_lava(tmp, written.network, inputs[:lava_samples],
                                     check.run.first(lava_samples), reporter) \
            if lava_samples > 0 else "--lava-samples 0"
        size = tmp.stat().st_size
    float_accuracy = None  # the student itself, not its BatchNorm-folded float twin
    if labels is not None:
        float_accuracy = float((reference_logits.mean(0).argmax(-1) == labels).mean())
    return LoihiExportResult(Path(path), network.layers, source.timesteps, source.input_shape,
                             network.input_scale, described, len(inputs),
                             check.argmax_agreement, check.spike_agreement, float_accuracy,
                             check.quantized_accuracy, size, folded_pools=folded_pools,
                             calibrated_on=calibrated_on,
                             lava_samples=0 if lava_skipped else min(lava_samples, len(inputs)),
                             lava_skipped=lava_skipped, saturated=check.run.saturated)


def check_in_lava(path: Path, network: QuantizedNetwork, inputs: torch.Tensor,
                  fixed: FixedPointRun, reporter: Reporter | None = None) -> str | None:
    """Run the written file in Lava and require ``fixed`` (the integer model's run on the
    same ``inputs``) exactly, spikes and readout. Returns why it could not run (no Lava
    environment), None once checked."""
    from .simulate import lava_python, run_lava

    try:
        python = lava_python()
    except NeuroKDError as exc:
        return str(exc)
    x_q = network.quantize_input(inputs)
    lava = run_lava(python, Path(path), x_q, network, reporter or Reporter(), chunk=20)
    spiking = [k for k, layer in enumerate(network.layers) if layer.spiking]
    differ = [network.layers[k].name for k, expected in zip(spiking, fixed.spikes, strict=True)
              if not np.array_equal(lava[f"spikes_{k}"], expected)]
    # a spiking last layer is compared by its spikes above; else its v is the integer logit
    if not network.layers[-1].spiking and not np.array_equal(lava["readout"], fixed.readout):
        differ.append(f"{network.layers[-1].name} (readout)")
    if differ:
        raise NeuroKDError("Loihi export: Lava (lava-dl netx, fixed_pt) runs the written file "
                           f"differently from neurokd's integer model in {', '.join(differ)} "
                           f"on {len(x_q)} samples; nothing written")
    return None


def loihi_chain(graph: StudentGraph) -> tuple[list[tuple[LayerRecord, LayerRecord | None]],
                                               list[str]]:
    """(synaptic layer, its neuron layer or None) pairs and the average pools folded into
    them; refuses what netx cannot hold."""
    folded, pools = fold_average_pools(fold_batchnorm(graph))
    folded.records = [_mark_limits(folded, r) for r in folded.records]
    folded.require(LOIHI_KINDS, "Loihi (netx)")
    chain: list[tuple[LayerRecord, LayerRecord | None]] = []
    problems: list[str] = []
    previous = "input"
    for record in folded.records[1:-1]:
        if record.inputs != (previous,):
            problems.append(f"{record.name} (not a plain chain of layers)")
        previous = record.name
        if record.kind == "linear" and len(record.input_shape) != 1:
            problems.append(f"{record.name} (linear on a {len(record.input_shape)}-D input: "
                            "flatten before it)")
        if record.kind in ("conv", "linear"):
            if chain and chain[-1][1] is None:
                problems.append(f"{chain[-1][0].name} (no neurons before the next layer)")
            chain.append((record, None))
        elif record.kind == "neuron":
            if not chain or chain[-1][1] is not None:
                problems.append(f"{record.name} (a neuron layer without a conv/linear before it)")
            else:
                chain[-1] = (chain[-1][0], record)
    if not chain:
        problems.append("the model has no conv or linear layer")
    if problems:
        raise NeuroKDError("cannot export to Loihi (netx): unsupported layers: "
                           + "; ".join(problems))
    return chain, pools


def _mark_limits(graph: StudentGraph, record: LayerRecord) -> LayerRecord:
    reason = ""
    if record.kind == "add":
        reason = "residual addition: netx holds a chain of layers, no shortcuts"
    elif record.kind in ("maxpool", "avgpool"):
        reason = (f"{type(record.module).__name__}: netx has no pooling layer and only "
                  "non-overlapping average pools before a conv/linear fold; use a strided conv")
    elif record.kind == "neuron" and record.neuron.reset == "soft":
        reason = "soft reset: Loihi's CUBA neuron resets v to 0"
    elif record.kind == "neuron" and record.neuron.v_reset != 0.0:
        reason = f"v_reset={record.neuron.v_reset:g}: Loihi resets v to 0"
    elif record.kind == "conv" and not isinstance(record.module, nn.Conv2d):
        reason = f"{type(record.module).__name__}: netx convolutions are 2-D"
    elif record.kind == "conv" and record.module.padding_mode != "zeros":
        reason = f"padding_mode={record.module.padding_mode!r}: netx pads with zeros"
    elif record.kind == "flatten" and graph.consumers(record.name) and \
            graph.consumers(record.name)[0].kind != "linear":
        reason = "flatten not followed by a linear layer"
    return replace(record, kind="unsupported", reason=reason) if reason else record


def _float_layer(synapse: LayerRecord, neuron: LayerRecord | None) -> FloatLayer:
    module = synapse.module
    bias = module.bias if module.bias is not None else torch.zeros(module.weight.shape[0])
    extra = conv_geometry(lambda key: getattr(module, key)) if synapse.kind == "conv" else {}
    return FloatLayer("conv" if synapse.kind == "conv" else "dense", module.weight.detach(),
                      bias.detach(), neuron.neuron if neuron else None, **extra)


def quantize(chain, inputs: torch.Tensor, timesteps: int) -> QuantizedNetwork:
    """One scale per layer (see the module docstring); ``inputs`` set the input range."""
    x = inputs.numpy().astype(np.float64)
    signed = bool(x.min() < 0)
    peak = float(np.abs(x).max()) or 1.0
    input_scale = _input_scale(*chain[0], peak, 127 if signed else 255)
    top = int(round(peak * input_scale))
    layers, in_scale, in_peak = [], input_scale, top
    for synapse, neuron in chain:
        layers.append(_quantize_layer(synapse, neuron, in_scale, in_peak))
        in_scale, in_peak = 1.0, 1
    return QuantizedNetwork(layers, tuple(inputs.shape[1:]), timesteps, input_scale,
                            -top if signed else 0, top)


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
    conv = synapse.kind == "conv"
    extra = conv_geometry(lambda key: getattr(synapse.module, key)) if conv else {}
    report = {"weight_range": (float(weight.min()), float(weight.max())),
              "int_range": (int(w_int.min()), int(w_int.max())),
              "clipped": float((np.abs(raw) > WEIGHT_MAX + 1).mean()),
              "bias_clipped": float((np.abs(scale * gain * bias) > MAX_BIAS_MANT + 0.5).mean()),
              "limit": binding, "threshold_mant": threshold if params else None}
    return QuantizedLayer(synapse.name, "conv" if conv else "dense", w_int, b_int, cuba,
                          params is not None, tuple(synapse.input_shape),
                          tuple(synapse.output_shape), scale=float(scale), report=report,
                          **extra)


@dataclass
class FixedPointCheck:
    argmax_agreement: float
    spike_agreement: dict[str, float]
    quantized_accuracy: float | None
    run: FixedPointRun              # the integer model's run, reused by the Lava check


def compare_fixed_point(network: QuantizedNetwork, float_layers: list[FloatLayer],
                        inputs: torch.Tensor, labels: np.ndarray | None) -> FixedPointCheck:
    """The integer network against its float twin on the same inputs."""
    run = run_fixed_point(network, network.quantize_input(inputs))
    float_logits, float_spikes = run_float(float_layers, inputs, network.timesteps)
    quantized = network.logits(run.readout).mean(1).argmax(-1)
    floating = float_logits.mean(0).argmax(-1)
    names = [lay.name for lay in network.layers if lay.spiking]
    spike_agreement = {name: float((got.swapaxes(0, 1) == ref).mean())
                       for name, got, ref in zip(names, run.spikes, float_spikes, strict=True)}
    accuracy = None if labels is None else float((quantized == labels).mean())
    return FixedPointCheck(float((quantized == floating).mean()), spike_agreement, accuracy,
                           run)
