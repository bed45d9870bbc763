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
from .result import SimulationResult


def simulate_lava_graph(export: str | Path, dataset: str | None, samples: int | None,
                        reporter: Reporter | None, data_dir: str | None, chunk: int,
                        block: int) -> SimulationResult:
    """``simulate_lava`` for a graph file (same arguments)."""
    from neurokd.errors import NeuroKDError

    stored = read_graph(export)
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
    steps = count * network.timesteps
    identical = {network.groups[k].name: same / (steps * math.prod(network.groups[k].shape))
                 for k, same in totals["same"].items()}
    return SimulationResult(
        "lava", str(export), dataset, count, network.timesteps,
        float((totals["lava"] == labels).mean()), float((totals["float"] == labels).mean()),
        float((totals["fixed"] == labels).mean()),
        float((totals["lava"] == totals["fixed"]).mean()), identical,
        {network.groups[k].name: int(s.sum()) for k, s in totals["spikes"].items()},
        totals["seconds"] / count, [s.name for s in network.synapses],
        [s.kind for s in network.synapses],
        graph_event_counts(network, totals["input_events"], totals["spikes"], count))


def _run_blocks(python: Path, export: Path, stored: GraphFile, x: torch.Tensor,
                reporter: Reporter, chunk: int, block: int) -> dict:
    network = stored.network
    spiking = [k for k, g in enumerate(network.groups) if g.spiking]
    totals = {"lava": [], "fixed": [], "float": [], "same": dict.fromkeys(spiking, 0),
              "spikes": dict.fromkeys(spiking, 0.0), "input_events": 0, "seconds": 0.0}
    axis = 1 if network.input_spikes else 0   # spikes: [T, N, ...], graded: [N, ...]
    for start in range(0, x.shape[axis], block):
        part = take(x, slice(start, start + block), axis)
        x_q = network.quantize_input(part)
        lava = run_lava(python, export, x_q, network.timesteps, reporter, chunk,
                        spikes=network.input_spikes)
        fixed = run_graph_fixed_point(network, x_q)
        float_logits, _ = run_graph_float(stored.float_graph, part, keep_spikes=False,
                                          time_major=network.input_spikes)
        totals["lava"].append(_predictions(network, lava, fixed))
        totals["fixed"].append(network.logits(fixed.readout).mean(1).argmax(-1))
        totals["float"].append(float_logits.mean(0).argmax(-1))
        for k in spiking:
            got = lava[f"spikes_{k}"]
            totals["same"][k] += int((got == fixed.spikes[k]).sum())
            totals["spikes"][k] = totals["spikes"][k] + got.sum(axis=(0, 1)).astype(np.float64)
        events = x_q.sum((0, 1)) if network.input_spikes else (x_q != 0).sum(0)
        totals["input_events"] = totals["input_events"] + events
        totals["seconds"] += float(lava["seconds"])
    for key in ("lava", "fixed", "float"):
        totals[key] = np.concatenate(totals[key])
    return totals


def _predictions(network: GraphNetwork, lava: dict, fixed) -> np.ndarray:
    """Lava's classes: from its readout v, or the spikes of a spiking last group."""
    last = len(network.groups) - 1
    readout = lava[f"spikes_{last}"] if network.readout.spiking else lava["readout"]
    return network.logits(readout).mean(1).argmax(-1)


def graph_event_counts(network: GraphNetwork, input_events: np.ndarray,
                       spike_totals: dict[int, np.ndarray], samples: int) -> EventCounts:
    """One row per synapse (module docstring); graded input into a synapse is counted as its
    non-zero values x T, spikes as they came."""
    frames = samples * network.timesteps
    events_in = {INPUT: (np.asarray(input_events, dtype=np.float64) if network.input_spikes
                         else np.asarray(input_events, dtype=np.float64) * network.timesteps)}
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
