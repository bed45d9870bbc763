"""Loihi export: the student as a lava-dl netx HDF5 file in Loihi's integer arithmetic.

Mapping (spikingjelly 2.0 -> netx ``CUBA``). spikingjelly's LIF with ``decay_input`` charges
``h = v (1 - 1/tau) + (W x + b) / tau``; CUBA with ``iDecay = 4096`` has no current memory, so
``v = v (4096 - vDecay) / 4096 + a + bias`` with ``vDecay = round(4096 / tau)`` and the ``1/tau``
folded into the integer weights and bias (IF: ``vDecay = 0``; ``decay_input=False``: no
``1/tau``). Hard reset to 0 is CUBA's reset. BatchNorm is folded into the conv/linear before it.

Quantization (``loihi_quantize.py``), one scale ``S`` per layer (integer units per unit of the
float membrane), the largest that keeps every weight in 8 bits, the bias in 13, the threshold
in 17 and the worst-case synaptic sum inside Loihi's 24-bit current register (``|a| << 6 <
2**23``). The readout (the last linear layer, without neurons) gets ``iDecay = vDecay = 4096``
and the largest threshold: its ``v`` each step is the integer logit.

Analog input: the first layer receives graded 8-bit spikes (``netx.hdf5.Network(...,
input_message_bits=8)``), the input quantized as ``round(x * input_scale)``, at most 255
levels over the largest ``x`` of the check inputs (127 for signed data); ``_input_scale``
splits the first layer's precision evenly between input levels and weight levels.

Spike input (event frames, rate-coded data: inputs ``[T, N, ...]`` with a time axis): the
first layer receives binary spikes (``input_message_bits=0``), a new 0/1 input at every
timestep, scaled like every other layer's spikes (``s_x = 1``): no graded input, no input
quantization. Frames holding event counts above 1 are refused (``--event-frames binary``).

Average pools with non-overlapping windows are folded into the conv/linear after them
(``pool_fold.py``). A network with residual additions or max pooling is not a chain: it is
written as neurokd's Loihi graph file (``graph_build.py``, ``graph_file.py``) and checked the
same way, in the graph's integer model and in Lava (``lava_runner.py`` builds the graph from
``lava.proc`` processes). Refused, naming the layers: average pools that do not fold, max
pooling of anything but binary spikes, soft reset, ``v_reset != 0``, neuron layers on the raw
input or two in a row, and synaptic layers without neurons between them (except the readout).
The export prints the deployed size and the Loihi 2 cores it needs (``deployed_size.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from neurokd.data.encoding import is_static
from neurokd.errors import NeuroKDError
from neurokd.files.safe_io import atomic_path
from neurokd.runtime.progress import Reporter
from neurokd.student.inputs import recorded_settings, source_inputs
from neurokd.student.sources import StudentSource, as_source
from neurokd.text import pct

from ..base import Exporter, ExportResult
from ..graph import LayerRecord, StudentGraph, fold_batchnorm, trace_student
from ..verify import Agreement, eager_run, private_copy
from .deployed_size import DeployedSize, deployed_size
from .fixed_point import (
    FixedPointRun,
    QuantizedLayer,
    QuantizedNetwork,
    check_spikes,
    run_fixed_point,
)
from .graph_build import build_float_graph, mark_limits, quantize_graph
from .graph_check import check_graph_in_lava, compare_graph
from .graph_file import read_graph, write_graph
from .graph_network import GraphNetwork
from .lava_host import lava_python, require_lava, run_lava
from .netx_file import FloatLayer, read_netx, run_float, write_netx
from .pool_fold import fold_average_pools
from .quantize import layer_geometry, quantize

LOIHI_KINDS = ("conv", "dense", "flatten", "neuron")
GRADED_ENCODING = "graded 8-bit input spikes into the first layer"
SPIKE_ENCODING = "binary input spikes into the first layer, one input per timestep"


@dataclass
class LoihiExportResult(ExportResult):
    """``agreement``: the integer (Loihi fixed-point) network against the float student."""

    layers: list[QuantizedLayer]    # scale, integer ranges and clipping in ``.quantization``
    timesteps: int
    input_shape: tuple[int, ...]
    input_scale: float
    spike_agreement: dict[str, float]   # per neuron layer: share of identical spikes
    float_accuracy: float | None    # on the check inputs, when they carry labels
    quantized_accuracy: float | None
    encoding: str = GRADED_ENCODING  # or SPIKE_ENCODING
    folded_pools: list[str] = field(default_factory=list)   # merged into the next layer
    calibrated_on: str = ""         # the inputs that set the input quantization range
    lava_samples: int = 0           # samples run in Lava (netx) with spikes equal to the model
    lava_skipped: str | None = None  # why Lava did not check the file (no .venv-lava)
    saturated: int = 0              # membrane values clipped at 24 bits on the check inputs
    size: DeployedSize | None = None   # neurons, synapses, memory, Loihi 2 cores
    graph: str = ""                 # a graph file: its groups and synapses in words ("": netx)

    def summary_lines(self) -> list[str]:
        """What was written, the per-layer quantization, and how the integer network agrees."""
        shape = ",".join(str(d) for d in self.input_shape)
        written = f"neurokd Loihi graph ({self.graph})" if self.graph else "lava-dl netx HDF5"
        lines = [f"wrote {self.path} ({self.file_bytes / 1024:.0f} kB): {written}, "
                 f"T={self.timesteps}, input [{shape}] as {self.encoding} "
                 + ("(0/1 as they come, nothing quantized)" if self.encoding == SPIKE_ENCODING
                    else f"(x * {self.input_scale:.4g}, rounded)")]
        lines += _quantization_table(self.layers)
        if self.folded_pools:
            lines.append("  average pools folded into the next layer: "
                         + ", ".join(self.folded_pools))
        rates = ", ".join(f"{name} {100 * share:.2f}%" for name, share in
                          self.spike_agreement.items())
        lines.append(f"  Loihi fixed-point model vs float on {self.verified_on}: argmax "
                     f"{100 * self.agreement.argmax_agreement:.2f}%; identical spikes: {rates}")
        if self.float_accuracy is not None:
            drop = 100 * (self.float_accuracy - self.quantized_accuracy)
            lines.append(f"  accuracy: float {pct(self.float_accuracy)}, 8-bit fixed point "
                         f"{pct(self.quantized_accuracy)} (drop {drop:.2f} pt)")
        if self.encoding != SPIKE_ENCODING:
            lines.append(f"  input range calibrated on the {self.calibrated_on}")
        clipped_bias = [f"{lay.name} {pct(lay.quantization['bias_clipped'])}"
                        for lay in self.layers if lay.quantization.get("bias_clipped")]
        if clipped_bias:
            lines.append("  warning: biases clipped to 13 bits in " + ", ".join(clipped_bias))
        if self.saturated:
            lines.append(f"  warning: {self.saturated:,} membrane values hit Loihi's 24-bit "
                         "limit on the check inputs and were clipped (the float student has "
                         "none)")
        if self.size is not None:
            lines += self.size.lines()
        runner = ("neurokd's process graph: lava.proc conv/dense + LIFReset" if self.graph
                  else "lava-dl netx")
        if self.lava_skipped:
            lines.append(f"  not run in Lava: {self.lava_skipped}")
        else:
            lines.append(f"  Lava ({runner}, fixed_pt) on {self.lava_samples} samples: "
                         "spikes and readout identical to the integer model")
        return lines




def _quantization_table(layers: list[QuantizedLayer]) -> list[str]:
    """The per-layer quantization as text lines (a rich table, never narrower than 120)."""
    import io

    from rich.console import Console
    from rich.table import Table

    table = Table(title="quantization (8-bit weights, one scale per layer)", title_justify="left")
    for column in ("layer", "type", "scale", "float weights", "int weights", "clipped",
                   "vThMant", "vDecay", "scale set by"):
        table.add_column(column, justify="left" if column in ("layer", "type", "scale set by")
                         else "right")
    for layer in layers:
        q = layer.quantization
        table.add_row(layer.name, layer.kind + ("" if layer.spiking else " (readout)"),
                      f"{layer.scale:.4g}",
                      f"[{q['weight_range'][0]:.3g}, {q['weight_range'][1]:.3g}]",
                      f"[{q['int_range'][0]}, {q['int_range'][1]}]", pct(q["clipped"]),
                      "—" if q["threshold_mant"] is None else str(q["threshold_mant"]),
                      str(layer.neuron.v_decay), q["limit"])
    buffer = io.StringIO()
    Console(file=buffer, width=120, markup=False, highlight=False, color_system=None).print(table)
    return buffer.getvalue().rstrip("\n").splitlines()


def export_loihi(source: StudentSource | nn.Module | str | Path, path: str | Path,
                 max_samples: int = 512, dataset: str | None = None,
                 data_dir: str | None = None, random_inputs: bool = False,
                 lava_samples: int = 32, reporter: Reporter | None = None,
                 min_agreement: float = 0.5, input_shape: tuple[int, ...] | None = None,
                 timesteps: int | None = None) -> LoihiExportResult:
    """Quantize, write ``path`` atomically, read it back and check it before renaming.

    Two checks on what the file holds. In Loihi fixed point here, against the float student:
    raises (nothing written) when the integer network predicts the float network's class on
    fewer than ``min_agreement`` of the check inputs (the default only catches broken files:
    an under-trained student with near-tied logits can flip 10% of its predictions under 8-bit
    weights while its accuracy stays put). And, when ``.venv-lava`` exists, in Lava itself
    (lava-dl netx, ``Loihi2SimCfg(select_tag="fixed_pt")``) on the first ``lava_samples``
    check inputs: every spike and readout value must equal the integer model's, else nothing
    is written. ``lava_samples=0`` skips the Lava check; without a Lava environment any other
    value is ``ToolMissing`` (exit 1), never a silent skip. The check inputs are the test split
    and the input range is calibrated on the training split (``neurokd.student.inputs``).
    """
    source = as_source(source, input_shape, timesteps)
    model = private_copy(source.model)
    graph = trace_student(model, source.input_shape, source.timesteps)
    choice = {"dataset": dataset, "data_dir": data_dir, "random": random_inputs}
    chain, folded_pools, problems = _chain_of(graph)
    if problems:  # not a chain netx can hold: neurokd's graph file, or refused by name
        return _export_graph(source, model, graph, Path(path), max_samples, choice,
                             lava_samples, reporter, min_agreement)
    require_lava(lava_samples)  # after the refusals of the network, before any work
    inputs, labels, described = source_inputs(source, "test", max_samples, **choice)
    spikes = not is_static(inputs, source.input_shape)
    if spikes:
        check_spikes(inputs)  # before any quantization work
    calibration, _, calibrated_on = (inputs, None, "") if spikes else \
        source_inputs(source, "train", max_samples, **choice)
    float_layers = [_float_layer(syn, neu) for syn, neu in chain]
    network = quantize(chain, calibration, source.timesteps, spikes)
    reference_logits, _ = eager_run(model, [])(inputs)
    meta = _file_meta(source, reference_logits)
    count = len(labels) if labels is not None else inputs.shape[1 if spikes else 0]
    with atomic_path(path) as tmp:
        write_netx(tmp, network, float_layers, meta)
        written = read_netx(tmp)  # the check runs on what the file holds, not on memory
        check = compare_fixed_point(written.network, written.float_layers, inputs, labels)
        _require_agreement(check.agreement, count, min_agreement)
        lava_skipped = check_in_lava(tmp, written.network, check.x_q[:lava_samples],
                                     check.run.first(lava_samples), reporter) \
            if lava_samples > 0 else "skipped as asked (no Lava check)"
        size = tmp.stat().st_size
    float_accuracy = None  # the student itself, not its BatchNorm-folded float twin
    if labels is not None:
        float_accuracy = float((reference_logits.mean(0).argmax(-1) == labels).mean())
    return LoihiExportResult(Path(path), size, described, check.agreement, network.layers,
                             source.timesteps, source.input_shape, network.input_scale,
                             check.spike_agreement, float_accuracy, check.quantized_accuracy,
                             encoding=SPIKE_ENCODING if spikes else GRADED_ENCODING,
                             folded_pools=folded_pools,
                             calibrated_on=calibrated_on,
                             lava_samples=0 if lava_skipped else min(lava_samples, count),
                             lava_skipped=lava_skipped, saturated=check.run.saturated,
                             size=chain_size(network))


def chain_size(network) -> DeployedSize:
    """The deployed size of a netx chain: one neuron group per layer."""
    return deployed_size([(int(np.prod(lay.output_shape)), [lay.geometry])
                          for lay in network.layers])


def graph_size(network: GraphNetwork) -> DeployedSize:
    """The deployed size of a graph: its groups with the synapses into each."""
    return deployed_size([(int(np.prod(g.shape)), [s.geometry for s in network.incoming(k)])
                          for k, g in enumerate(network.groups)])


def _export_graph(source: StudentSource, model: nn.Module, graph: StudentGraph, path: Path,
                  max_samples: int, choice: dict, lava_samples: int,
                  reporter: Reporter | None, min_agreement: float) -> LoihiExportResult:
    """``export_loihi`` for a network with residual adds or max pooling: the same inputs,
    calibration and checks, written as neurokd's Loihi graph file."""
    float_graph, folded_pools, problems = build_float_graph(graph)
    StudentGraph.refuse(problems, "Loihi")
    require_lava(lava_samples)
    inputs, labels, described = source_inputs(source, "test", max_samples, **choice)
    spikes = not is_static(inputs, source.input_shape)
    if spikes:
        check_spikes(inputs)  # before any quantization work
    calibration, _, calibrated_on = (inputs, None, "") if spikes else \
        source_inputs(source, "train", max_samples, **choice)
    network = quantize_graph(float_graph, calibration, spikes)
    reference_logits, _ = eager_run(model, [])(inputs)
    meta = _file_meta(source, reference_logits)
    count = len(labels) if labels is not None else inputs.shape[1 if spikes else 0]
    with atomic_path(path) as tmp:
        write_graph(tmp, network, float_graph, meta)
        written = read_graph(tmp)  # the check runs on what the file holds, not on memory
        check = compare_graph(written.network, written.float_graph, inputs, labels)
        _require_agreement(check.agreement, count, min_agreement)
        lava_skipped = check_graph_in_lava(tmp, written.network, check.x_q[:lava_samples],
                                           check.run.first(lava_samples), reporter) \
            if lava_samples > 0 else "skipped as asked (no Lava check)"
        size = tmp.stat().st_size
    float_accuracy = None  # the student itself, not its BatchNorm-folded float twin
    if labels is not None:
        float_accuracy = float((reference_logits.mean(0).argmax(-1) == labels).mean())
    roles = [g.role for g in network.groups]
    described_graph = (f"{roles.count('layer') + roles.count('readout')} layers, "
                       f"{roles.count('relay')} relay and {roles.count('maxpool')} max-pool "
                       f"groups, {len(network.synapses)} synapses")
    layers = [g for g in network.groups if g.role in ("layer", "readout")]
    return LoihiExportResult(Path(path), size, described, check.agreement, layers,
                             source.timesteps, source.input_shape, network.input_scale,
                             check.spike_agreement, float_accuracy, check.quantized_accuracy,
                             encoding=SPIKE_ENCODING if spikes else GRADED_ENCODING,
                             folded_pools=folded_pools, calibrated_on=calibrated_on,
                             lava_samples=0 if lava_skipped else min(lava_samples, count),
                             lava_skipped=lava_skipped, saturated=check.run.saturated,
                             size=graph_size(network), graph=described_graph)


def check_in_lava(path: Path, network: QuantizedNetwork, x_q: np.ndarray,
                  fixed: FixedPointRun, reporter: Reporter | None = None) -> str | None:
    """Run the written file in Lava and require ``fixed`` (the integer model's run on the
    same integer inputs ``x_q``) exactly, spikes and readout. Returns why it could not run
    (no Lava environment), None once checked."""
    try:
        python = lava_python()
    except NeuroKDError as exc:
        return str(exc)
    lava = run_lava(python, Path(path), x_q, network.timesteps, reporter, chunk=20,
                    spikes=network.input_spikes)
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


Chain = list[tuple[LayerRecord, LayerRecord | None]]


def loihi_limits(graph: StudentGraph) -> list[str]:
    """Layers neither netx nor neurokd's graph file can hold, by name (empty when one can)."""
    if not _chain_of(graph)[2]:
        return []
    return build_float_graph(graph)[2]


def loihi_chain(graph: StudentGraph) -> tuple[Chain, list[str]]:
    """(synaptic layer, its neuron layer or None) pairs and the average pools folded into
    them; refuses what netx cannot hold."""
    chain, pools, problems = _chain_of(graph)
    StudentGraph.refuse(problems, "Loihi (netx)")
    return chain, pools


def _chain_of(graph: StudentGraph) -> tuple[Chain, list[str], list[str]]:
    folded, pools = fold_average_pools(fold_batchnorm(graph))
    folded.records = [mark_limits(folded, r, graphs=False) for r in folded.records]
    offending = folded.offending(LOIHI_KINDS)
    if offending:
        return [], pools, offending
    chain: Chain = []
    problems: list[str] = []
    previous = "input"
    for record in folded.records[1:-1]:
        if record.inputs != (previous,):
            problems.append(f"{record.name} (not a plain chain of layers)")
        previous = record.name
        if record.kind == "dense" and len(record.input_shape) != 1:
            problems.append(f"{record.name} (linear on a {len(record.input_shape)}-D input: "
                            "flatten before it)")
        if record.kind in ("conv", "dense"):
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
    return chain, pools, problems


def _float_layer(synapse: LayerRecord, neuron: LayerRecord | None) -> FloatLayer:
    module = synapse.module
    bias = module.bias if module.bias is not None else torch.zeros(module.weight.shape[0])
    return FloatLayer(layer_geometry(synapse), module.weight.detach(), bias.detach(),
                      neuron.neuron if neuron else None)


@dataclass
class FixedPointCheck:
    agreement: Agreement            # integer network vs its float twin
    spike_agreement: dict[str, float]
    quantized_accuracy: float | None
    run: FixedPointRun              # the integer model's run, reused by the Lava check
    x_q: np.ndarray                 # the integer inputs it ran on ([N, ...] or [N, T, ...])


def compare_fixed_point(network: QuantizedNetwork, float_layers: list[FloatLayer],
                        inputs: torch.Tensor, labels: np.ndarray | None) -> FixedPointCheck:
    """The integer network against its float twin on the same inputs (``[N, ...]`` analog,
    or ``[T, N, ...]`` spikes for a network on spikes)."""
    x_q = network.quantize_input(inputs)
    run = run_fixed_point(network, x_q)
    float_logits, float_spikes = run_float(float_layers, inputs, network.timesteps,
                                           time_major=network.input_spikes)
    integer_logits = network.logits(run.readout).swapaxes(0, 1)   # [T, N, K] like the float
    quantized = integer_logits.mean(0).argmax(-1)
    floating = float_logits.mean(0).argmax(-1)
    names = [lay.name for lay in network.layers if lay.spiking]
    same = [(got.swapaxes(0, 1) == ref) for got, ref in zip(run.spikes, float_spikes,
                                                           strict=True)]
    spike_agreement = {name: float(s.mean()) for name, s in zip(names, same, strict=True)}
    checked = sum(s.size for s in same)
    count = len(x_q)
    agreement = Agreement(
        count, (count,), float(np.abs(integer_logits - float_logits).max()),
        float(np.abs(float_logits).max()), int(sum(s.size - int(s.sum()) for s in same)),
        checked, float((quantized == floating).mean()),
        float(sum(ref.sum() for ref in float_spikes)) / max(1, checked))
    accuracy = None if labels is None else float((quantized == labels).mean())
    return FixedPointCheck(agreement, spike_agreement, accuracy, run, x_q)



def _file_meta(source: StudentSource, reference_logits: torch.Tensor) -> dict:
    """What a Loihi file (netx chain or graph) records of its run: the data settings, the
    source, the class count and names, and the run's early exit (rule, threshold and what
    they gave, docs/anytime.md) when it has one, as the ONNX and NIR files do."""
    exit_record = {"exit": dict(source.exit)} if source.exit else {}
    return {**recorded_settings(source.config), "source": source.label,
            "num_classes": int(reference_logits.shape[-1]),
            "class_names": list(source.class_names or []), **exit_record}


def _require_agreement(agreement, count: int, min_agreement: float) -> None:
    """Refuse a file whose integer network predicts the float network's class too rarely."""
    if agreement.argmax_agreement < min_agreement:
        raise NeuroKDError(
            f"Loihi export: the 8-bit integer network predicts the float network's class "
            f"on only {agreement.argmax_agreement:.1%} of {count} samples "
            f"(need {min_agreement:.0%}); nothing written")

EXPORTER = Exporter("loihi", ".net", "lava-dl netx HDF5 (a chain) or neurokd's Loihi graph "
                    "file (residual adds, max pooling) in Loihi's 8-bit integer arithmetic, "
                    "checked bit for bit in Lava", export_loihi, loihi_limits,
                    ("lava_samples", "reporter", "min_agreement"))
