"""The checks of a written Loihi graph file, as the chain's (``export.py``) are for netx.

:func:`compare_graph`: the integer model against the float network stored beside it, on the
same inputs (argmax, and per spiking group the share of identical spikes). :func:`check_graph_in_lava`:
the file run in Lava (``lava_runner.py`` builds it from ``lava.proc`` processes) against the
integer model's run, every spike of every group and every readout value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from neurokd.errors import NeuroKDError
from neurokd.runtime.progress import Reporter

from ..verify import Agreement
from .graph_network import (
    FloatGraph,
    GraphNetwork,
    GraphRun,
    run_graph_fixed_point,
    run_graph_float,
)
from .lava_host import lava_python, run_lava


@dataclass
class GraphCheck:
    agreement: Agreement            # integer network vs its float twin
    spike_agreement: dict[str, float]   # per spiking group (relays and max pools included)
    quantized_accuracy: float | None
    run: GraphRun                   # the integer model's run, reused by the Lava check
    x_q: np.ndarray                 # the integer inputs it ran on ([N, ...] or [N, T, ...])
    float_logits: np.ndarray        # [T, N, K]


def compare_graph(network: GraphNetwork, float_graph: FloatGraph, inputs: torch.Tensor,
                  labels: np.ndarray | None) -> GraphCheck:
    """The integer network against its float twin on the same inputs (``[N, ...]`` analog,
    or ``[T, N, ...]`` spikes for a network on spikes)."""
    x_q = network.quantize_input(inputs)
    run = run_graph_fixed_point(network, x_q)
    float_logits, float_spikes = run_graph_float(float_graph, inputs,
                                                 time_major=network.input_spikes)
    integer_logits = network.logits(run.readout).swapaxes(0, 1)   # [T, N, K] like the float
    quantized = integer_logits.mean(0).argmax(-1)
    floating = float_logits.mean(0).argmax(-1)
    same = {k: run.spikes[k].swapaxes(0, 1) == float_spikes[k] for k in run.spikes}
    spike_agreement = {network.groups[k].name: float(s.mean()) for k, s in same.items()}
    checked = sum(s.size for s in same.values())
    count = len(x_q)
    agreement = Agreement(
        count, (count,), float(np.abs(integer_logits - float_logits).max()),
        float(np.abs(float_logits).max()),
        int(sum(s.size - int(s.sum()) for s in same.values())), checked,
        float((quantized == floating).mean()),
        float(sum(float_spikes[k].sum() for k in same)) / max(1, checked))
    accuracy = None if labels is None else float((quantized == labels).mean())
    return GraphCheck(agreement, spike_agreement, accuracy, run, x_q, float_logits)


def lava_differences(network: GraphNetwork, lava: dict[str, np.ndarray],
                     fixed: GraphRun) -> list[str]:
    """The groups whose Lava run differs from the integer model's (empty: bit for bit)."""
    differ = [network.groups[k].name for k, expected in fixed.spikes.items()
              if not np.array_equal(lava.get(f"spikes_{k}"), expected)]
    if not network.readout.spiking and not np.array_equal(lava.get("readout"), fixed.readout):
        differ.append(f"{network.readout.name} (readout)")
    return differ


def check_graph_in_lava(path: Path, network: GraphNetwork, x_q: np.ndarray, fixed: GraphRun,
                        reporter: Reporter | None = None) -> str | None:
    """Run the written graph file in Lava and require ``fixed`` (the integer model's run on
    the same inputs) exactly. Returns why it could not run (no Lava environment), None once
    checked."""
    try:
        python = lava_python()
    except NeuroKDError as exc:
        return str(exc)
    lava = run_lava(python, Path(path), x_q, network.timesteps, reporter, chunk=20,
                    spikes=network.input_spikes)
    differ = lava_differences(network, lava, fixed)
    if differ:
        raise NeuroKDError("Loihi export: Lava (neurokd's process graph, fixed_pt) runs the "
                           "written file differently from neurokd's integer model in "
                           f"{', '.join(differ)} on {len(x_q)} samples; nothing written")
    return None
