"""``neurokd simulate --backend lava`` for neurokd's Loihi graph file (residual adds, max pooling).

The same run as for a netx chain (``lava_backend.py``): the test split through Lava (the runner
builds the graph from ``lava.proc`` processes), through the bit-accurate integer model of the
graph and through the float network stored in the file, ``block`` samples at a time. Spikes are
compared group by group (relay and max-pool groups included). The spike-count file has one
row per synapse process: its geometry, the spikes of its source, and, on the first synapse
into each group, that group's spikes (the group's neuron updates are counted once; a readout
has none), so ``energy report --from-sim`` prices every synapse Loihi would run, the residual
adds' and the pools' included.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from neurokd.energy.events import EventCounts, LayerEvents
from neurokd.runtime.progress import Reporter
from neurokd.student.inputs import DataRef, split_inputs

from ..loihi.graph_file import GraphFile, read_graph
from ..loihi.graph_network import INPUT, GraphNetwork, run_graph_fixed_point, run_graph_float
from ..loihi.lava_host import lava_python, run_lava
from ..verify import take
from .anytime import ExitTally, anytime, run_exit
from .result import SimulationResult


def simulate_lava_graph(export: str | Path, dataset: str | None, samples: int | None,
                        reporter: Reporter | None, data_dir: str | None, chunk: int,
                        block: int, exit_rule: str | None = None,
                        exit_threshold: float | None = None,
                        no_exit: bool = False) -> SimulationResult:
    """``simulate_lava`` for a graph file (same arguments)."""
    from neurokd.errors import NeuroKDError

    stored = read_graph(export)
    network = stored.network
    tally = ExitTally(run_exit(stored.meta.get("exit"), f"{export}: neurokd.exit", exit_rule,
                               exit_threshold, no_exit), network.timesteps)
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
    steps = count * network.timesteps
    identical = {network.groups[k].name: same / (steps * math.prod(network.groups[k].shape))
                 for k, same in totals["same"].items()}
    by_step, exit = anytime(totals["logits"], labels, tally)
    exited = None if exit is None else graph_event_counts(
        network, totals["exit_input_events"], totals["exit_spikes"], count, tally.frames)
    return SimulationResult(
        "lava", str(export), dataset, count, network.timesteps,
        float((totals["lava"] == labels).mean()), float((totals["float"] == labels).mean()),
        float((totals["fixed"] == labels).mean()),
        float((totals["lava"] == totals["fixed"]).mean()), identical,
        {network.groups[k].name: int(s.sum()) for k, s in totals["spikes"].items()},
        totals["seconds"] / count, [s.name for s in network.synapses],
        [s.kind for s in network.synapses],
        graph_event_counts(network, totals["input_events"], totals["spikes"], count),
        accuracy_by_timestep=by_step, exit=exit, exit_run=tally.run(exited))


def _run_blocks(python: Path, export: Path, stored: GraphFile, x: torch.Tensor,
                reporter: Reporter, chunk: int, block: int, tally: ExitTally) -> dict:
    """As ``lava_backend._run_blocks``: predictions, Lava's per-step logits, spikes equal to
    the integer model's and their totals, the input events over the frames run (graded:
    non-zero values x T) and, with an exit, the spikes and events of the frames t < e_b."""
    network = stored.network
    spiking = [k for k, g in enumerate(network.groups) if g.spiking]
    totals = {"lava": [], "fixed": [], "float": [], "logits": [],
              "same": dict.fromkeys(spiking, 0), "spikes": dict.fromkeys(spiking, 0.0),
              "input_events": 0, "seconds": 0.0, "exit_spikes": dict.fromkeys(spiking, 0.0),
              "exit_input_events": 0.0}
    axis = 1 if network.input_spikes else 0   # spikes: [T, N, ...], graded: [N, ...]
    for start in range(0, x.shape[axis], block):
        part = take(x, slice(start, start + block), axis)
        x_q = network.quantize_input(part)
        lava = run_lava(python, export, x_q, network.timesteps, reporter, chunk,
                        spikes=network.input_spikes)
        fixed = run_graph_fixed_point(network, x_q)
        float_logits, _ = run_graph_float(stored.float_graph, part, keep_spikes=False,
                                          time_major=network.input_spikes)
        logits = _logits(network, lava)  # [T, B, K], Lava's own
        totals["lava"].append(logits.mean(0).argmax(-1))
        totals["logits"].append(logits)
        totals["fixed"].append(network.logits(fixed.readout).mean(1).argmax(-1))
        totals["float"].append(float_logits.mean(0).argmax(-1))
        mask = tally.mask(logits)
        for k in spiking:
            got = lava[f"spikes_{k}"]
            totals["same"][k] += int((got == fixed.spikes[k]).sum())
            totals["spikes"][k] = totals["spikes"][k] + got.sum(axis=(0, 1)).astype(np.float64)
            if mask is not None:  # spikes [B, T, ...]
                totals["exit_spikes"][k] += tally.sum(got, mask, time_major=False)
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


def _logits(network: GraphNetwork, lava: dict) -> np.ndarray:
    """Lava's per-step logits ``[T, B, K]``: from its readout v, or the spikes of a spiking
    last group."""
    last = len(network.groups) - 1
    readout = lava[f"spikes_{last}"] if network.readout.spiking else lava["readout"]
    return network.logits(readout).swapaxes(0, 1)


def graph_event_counts(network: GraphNetwork, input_events: np.ndarray,
                       spike_totals: dict[int, np.ndarray], samples: int,
                       frames: int | None = None) -> EventCounts:
    """One row per synapse (module docstring); ``input_events`` are over the frames run
    (graded input: its non-zero values x the steps each sample ran), spikes as they came.
    ``frames``: the sample steps counted, ``samples x T`` unless an exit stopped samples
    early."""
    frames = samples * network.timesteps if frames is None else frames
    events_in = {INPUT: np.asarray(input_events, dtype=np.float64)}
    events_in |= {k: np.asarray(s, dtype=np.float64) for k, s in spike_totals.items()}
    rows, counted = [], set()
    for syn in network.synapses:
        group = network.groups[syn.target]
        first = syn.target not in counted
        counted.add(syn.target)
        spikes = spike_totals.get(syn.target) if first else None
        rows.append(LayerEvents(
            syn.name, syn.geometry, events_in[syn.source].reshape(syn.input_shape), frames,
            syn.source != INPUT or network.input_spikes,
            math.prod(group.shape) * frames if first and group.spiking else 0,
            None if spikes is None else np.asarray(spikes, dtype=np.float64).reshape(-1)
            .reshape(syn.output_shape if syn.kind == "conv" else (-1,)), has_bias=first))
    return EventCounts(rows, samples, network.timesteps)
