"""``neurokd simulate --backend lava``: a Loihi export on a test split in Lava, against its models.

(A graph file, residual adds or max pooling, runs through ``lava_graph.py``.)

Runs the netx file in Lava's CPU simulator (``lava_host.run_lava``, bit-accurate fixed point)
and compares it with two computations done here: the float network (BatchNorm folded, stored
in the file) and the bit-accurate integer model (``fixed_point.run_fixed_point``). The per-layer
event counts go to the spike-count file (``neurokd.energy.spike_counts``) with ``--save``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from neurokd.energy.count import EventCounts
from neurokd.energy.spike_counts import layer_chain
from neurokd.errors import NeuroKDError
from neurokd.runtime.progress import Reporter
from neurokd.student.inputs import DataRef, split_inputs

from ..loihi.fixed_point import QuantizedNetwork, run_fixed_point
from ..loihi.graph_file import is_graph_file
from ..loihi.lava_host import lava_python, run_lava
from ..loihi.netx_file import read_netx, run_float
from ..verify import take
from .anytime import ExitTally, anytime, run_exit
from .lava_graph import simulate_lava_graph
from .result import SimulationResult

BLOCK = 256   # samples per Lava run and integer/float pass: a CIFAR test split stays in MBs


def simulate_lava(export: str | Path, dataset: str | None = None, samples: int | None = None,
                  reporter: Reporter | None = None, data_dir: str | None = None,
                  chunk: int = 20, block: int = BLOCK, exit_rule: str | None = None,
                  exit_threshold: float | None = None,
                  no_exit: bool = False) -> SimulationResult:
    """Run ``export`` on the first ``samples`` test samples of ``dataset`` (default: the one
    the export was made from) and compare it with the float and integer models, ``block``
    samples at a time. ``data_dir``: the data set's folder (CIFAR, imagefolder; default:
    the run's). The accuracy after each timestep and the exit (the options', else the one the
    file records) come from Lava's per-step readout (``anytime.py``)."""
    exits = (exit_rule, exit_threshold, no_exit)
    if is_graph_file(export):  # residual adds, max pooling: neurokd's graph file
        return simulate_lava_graph(export, dataset, samples, reporter, data_dir, chunk, block,
                                   *exits)
    stored = read_netx(export)
    network = stored.network
    tally = ExitTally(run_exit(stored.meta.get("exit"), f"{export}: neurokd.exit", *exits),
                      network.timesteps)
    dataset = dataset or stored.meta.get("dataset")
    if not dataset:
        raise NeuroKDError(f"{export} does not name its data set: give --dataset")
    if dataset == stored.meta.get("dataset"):
        data_dir = data_dir or stored.meta.get("data_dir")
    ref = DataRef.of(stored.meta, dataset, data_dir)
    ref.check_shape(network.input_shape)  # the input's fault first, then the machine's
    python = lava_python()  # before the data set loads: a missing .venv-lava fails at once
    reporter = reporter or Reporter()
    x, labels, _ = split_inputs(ref, "test", samples, network.input_shape, reporter)
    count = len(labels)
    totals = _run_blocks(python, Path(export), stored, x, reporter, chunk, block, tally)
    lava_pred, fixed_pred = totals["lava"], totals["fixed"]
    spiking = [lay for lay in network.layers if lay.spiking]
    identical = {lay.name: same / (count * network.timesteps * int(np.prod(lay.output_shape)))
                 for lay, same in zip(spiking, totals["same"], strict=True)}
    by_step, exit = anytime(totals["logits"], labels, tally)
    exited = None if exit is None else _event_counts(
        network, totals["exit_input_events"], totals["exit_spikes"], count, tally.frames)
    return SimulationResult(
        "lava", str(export), dataset, count, network.timesteps,
        float((lava_pred == labels).mean()), float((totals["float"] == labels).mean()),
        float((fixed_pred == labels).mean()), float((lava_pred == fixed_pred).mean()),
        identical, {lay.name: int(s.sum()) for lay, s in zip(spiking, totals["spikes"],
                                                               strict=True)},
        totals["seconds"] / count, [lay.name for lay in network.layers],
        [lay.kind for lay in network.layers],
        _event_counts(network, totals["input_events"], totals["spikes"], count),
        accuracy_by_timestep=by_step, exit=exit, exit_run=tally.run(exited))


def _run_blocks(python: Path, export: Path, stored, x: torch.Tensor, reporter: Reporter,
                chunk: int, block: int, tally: ExitTally) -> dict:
    """Lava, the integer and the float model on ``x``, ``block`` samples at a time (in one
    piece a CIFAR test split needs GBs): the three models' predictions, Lava's per-step
    logits ``[T, N, K]``, per spiking layer the spikes equal between Lava and the integer
    model and Lava's spike totals, the events into the first layer (over the frames run:
    graded input counts x T) and Lava's simulation seconds; with an exit, the spikes and input
    events of each sample's frames t < e_b too."""
    network = stored.network
    spiking = [k for k, lay in enumerate(network.layers) if lay.spiking]
    totals = {"lava": [], "fixed": [], "float": [], "logits": [], "same": [0] * len(spiking),
              "spikes": [0.0] * len(spiking), "input_events": 0, "seconds": 0.0,
              "exit_spikes": [0.0] * len(spiking), "exit_input_events": 0.0}
    axis = 1 if network.input_spikes else 0   # spikes: [T, N, ...], graded: [N, ...]
    for start in range(0, x.shape[axis], block):
        part = take(x, slice(start, start + block), axis)
        x_q = network.quantize_input(part)
        lava = run_lava(python, export, x_q, network.timesteps, reporter, chunk,
                        spikes=network.input_spikes)
        fixed = run_fixed_point(network, x_q)
        float_logits, _ = run_float(stored.float_layers, part, network.timesteps,
                                    keep_spikes=False, time_major=network.input_spikes)
        logits = network.logits(lava["readout"]).swapaxes(0, 1)  # [T, B, K], Lava's own
        totals["lava"].append(logits.mean(0).argmax(-1))
        totals["logits"].append(logits)
        totals["fixed"].append(network.logits(fixed.readout).mean(1).argmax(-1))
        totals["float"].append(float_logits.mean(0).argmax(-1))
        mask = tally.mask(logits)
        for i, (k, expected) in enumerate(zip(spiking, fixed.spikes, strict=True)):
            got = lava[f"spikes_{k}"]
            totals["same"][i] += int((got == expected).sum())
            totals["spikes"][i] = totals["spikes"][i] + got.sum(axis=(0, 1)).astype(np.float64)
            if mask is not None:  # spikes [B, T, ...]
                totals["exit_spikes"][i] += tally.sum(got, mask, time_major=False)
        # spikes [N, T, ...]: summed over samples and steps; graded: non-zero per sample x T
        events = x_q.sum((0, 1)) if network.input_spikes else \
            (x_q != 0).sum(0) * network.timesteps
        totals["input_events"] = totals["input_events"] + events
        if mask is not None:
            totals["exit_input_events"] += tally.sum(x_q, mask, time_major=False) \
                if network.input_spikes else tally.graded(x_q, mask)
        totals["seconds"] += float(lava["seconds"])
    for key in ("lava", "fixed", "float"):
        totals[key] = np.concatenate(totals[key])
    totals["logits"] = np.concatenate(totals["logits"], axis=1)
    return totals


def _event_counts(network: QuantizedNetwork, input_events: np.ndarray,
                  spike_totals: list[np.ndarray], samples: int,
                  frames: int | None = None) -> EventCounts:
    """The result file's counts: Lava's spikes per layer (summed over samples and the steps
    run), the input into the first: its spikes (likewise), or for graded input, repeated at
    every step, the non-zero inputs per position x the steps run. ``frames``: the sample
    steps counted, ``samples x T`` unless an exit stopped samples early."""
    totals = iter(spike_totals)
    layers = [(lay.name, lay.geometry, next(totals) if lay.spiking else None)
              for lay in network.layers]
    return layer_chain(layers, input_events, samples, network.timesteps,
                       input_spikes=network.input_spikes, frames=frames)
