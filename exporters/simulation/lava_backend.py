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
from .lava_graph import simulate_lava_graph
from .result import SimulationResult

BLOCK = 256   # samples per Lava run and integer/float pass: a CIFAR test split stays in MBs


def simulate_lava(export: str | Path, dataset: str | None = None, samples: int | None = None,
                  reporter: Reporter | None = None, data_dir: str | None = None,
                  chunk: int = 20, block: int = BLOCK) -> SimulationResult:
    """Run ``export`` on the first ``samples`` test samples of ``dataset`` (default: the one
    the export was made from) and compare it with the float and integer models, ``block``
    samples at a time. ``data_dir``: the data set's folder (CIFAR, imagefolder; default:
    the run's)."""
    if is_graph_file(export):  # residual adds, max pooling: neurokd's graph file
        return simulate_lava_graph(export, dataset, samples, reporter, data_dir, chunk, block)
    stored = read_netx(export)
    network = stored.network
    dataset = dataset or stored.meta.get("dataset")
    if not dataset:
        raise NeuroKDError(f"{export} does not name its data set: give --dataset")
    if dataset == stored.meta.get("dataset"):
        data_dir = data_dir or stored.meta.get("data_dir")
    python = lava_python()  # before the data set loads: a missing .venv-lava fails at once
    reporter = reporter or Reporter()
    x, labels, _ = split_inputs(DataRef.of(stored.meta, dataset, data_dir), "test", samples,
                                network.input_shape, reporter)
    count = len(labels)
    totals = _run_blocks(python, Path(export), stored, x, reporter, chunk, block)
    lava_pred, fixed_pred = totals["lava"], totals["fixed"]
    spiking = [lay for lay in network.layers if lay.spiking]
    identical = {lay.name: same / (count * network.timesteps * int(np.prod(lay.output_shape)))
                 for lay, same in zip(spiking, totals["same"], strict=True)}
    return SimulationResult(
        "lava", str(export), dataset, count, network.timesteps,
        float((lava_pred == labels).mean()), float((totals["float"] == labels).mean()),
        float((fixed_pred == labels).mean()), float((lava_pred == fixed_pred).mean()),
        identical, {lay.name: int(s.sum()) for lay, s in zip(spiking, totals["spikes"],
                                                               strict=True)},
        totals["seconds"] / count, [lay.name for lay in network.layers],
        [lay.kind for lay in network.layers],
        _event_counts(network, totals["input_events"], totals["spikes"], count))


def _run_blocks(python: Path, export: Path, stored, x: torch.Tensor, reporter: Reporter,
                chunk: int, block: int) -> dict:
    """Lava, the integer and the float model on ``x``, ``block`` samples at a time (in one
    piece a CIFAR test split needs GBs): the three models' predictions, per spiking layer the
    spikes equal between Lava and the integer model and Lava's spike totals, the events
    into the first layer and Lava's simulation seconds."""
    network = stored.network
    spiking = [k for k, lay in enumerate(network.layers) if lay.spiking]
    totals = {"lava": [], "fixed": [], "float": [], "same": [0] * len(spiking),
              "spikes": [0.0] * len(spiking), "input_events": 0, "seconds": 0.0}
    axis = 1 if network.input_spikes else 0   # spikes: [T, N, ...], graded: [N, ...]
    for start in range(0, x.shape[axis], block):
        part = take(x, slice(start, start + block), axis)
        x_q = network.quantize_input(part)
        lava = run_lava(python, export, x_q, network.timesteps, reporter, chunk,
                        spikes=network.input_spikes)
        fixed = run_fixed_point(network, x_q)
        float_logits, _ = run_float(stored.float_layers, part, network.timesteps,
                                    keep_spikes=False, time_major=network.input_spikes)
        totals["lava"].append(network.logits(lava["readout"]).mean(1).argmax(-1))
        totals["fixed"].append(network.logits(fixed.readout).mean(1).argmax(-1))
        totals["float"].append(float_logits.mean(0).argmax(-1))
        for i, (k, expected) in enumerate(zip(spiking, fixed.spikes, strict=True)):
            got = lava[f"spikes_{k}"]
            totals["same"][i] += int((got == expected).sum())
            totals["spikes"][i] = totals["spikes"][i] + got.sum(axis=(0, 1)).astype(np.float64)
        # spikes [N, T, ...]: summed over samples and steps; graded: non-zero per sample
        events = x_q.sum((0, 1)) if network.input_spikes else (x_q != 0).sum(0)
        totals["input_events"] = totals["input_events"] + events
        totals["seconds"] += float(lava["seconds"])
    for key in ("lava", "fixed", "float"):
        totals[key] = np.concatenate(totals[key])
    return totals


def _event_counts(network: QuantizedNetwork, input_events: np.ndarray,
                  spike_totals: list[np.ndarray], samples: int) -> EventCounts:
    """The result file's counts: Lava's spikes per layer (summed over samples and steps),
    the input into the first: its spikes (summed over samples and steps), or for graded
    input the non-zero inputs per position summed over samples."""
    totals = iter(spike_totals)
    layers = [(lay.name, lay.geometry, next(totals) if lay.spiking else None)
              for lay in network.layers]
    if network.input_spikes:
        return layer_chain(layers, input_events, samples, network.timesteps, input_spikes=True)
    # Graded input is repeated at every timestep: its events are the non-zero values x T.
    return layer_chain(layers, input_events * network.timesteps, samples,
                       network.timesteps)
