"""What ``neurokd simulate`` gives back, whichever backend ran: :class:`SimulationResult`."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from neurokd.energy.count import EventCounts
from neurokd.energy.spike_counts import ExitRun, write_spike_counts
from neurokd.errors import NeuroKDError


@dataclass
class SimulationResult:
    backend: str
    export: str
    dataset: str
    samples: int
    timesteps: int
    accuracy: float                 # the backend's accuracy (Lava, or ONNX Runtime)
    torch_accuracy: float | None    # the float network's (None for onnx: the file is it)
    quantized_accuracy: float | None    # the bit-accurate integer model's (lava only)
    agreement: float | None         # argmax agreement, backend vs integer model (lava only)
    # per layer with neurons, under its name (neurokd.student.layers; a graph file: per group)
    identical_spikes: dict[str, float]   # backend vs integer model
    spike_counts: dict[str, int]    # summed over samples and timesteps
    seconds_per_sample: float
    layer_names: list[str]          # synaptic layers in order (the student's module paths)
    layer_types: list[str]          # "conv" | "dense"
    counts: EventCounts | None = field(default=None, repr=False)  # what --save writes
    # The prefix prediction's accuracy after t = 1..T steps (docs/anytime.md); None where a
    # backend does not keep per-timestep logits.
    accuracy_by_timestep: list[float] | None = None
    # The exit applied to this run (--exit-rule/--exit-threshold, else the one the export
    # records): rule, threshold, origin ("given" | "run"), accuracy, mean_timesteps,
    # exit_histogram, from the backend's own per-step logits; None without an exit.
    exit: dict | None = None
    # Its exit steps and the counts over each sample's frames t < e_b (what --save writes).
    exit_run: ExitRun | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        """What ``--json`` writes. ``lava_accuracy`` repeats ``accuracy`` under the name the
        first version of the file used, so scripts reading it keep working."""
        values = {f.name: getattr(self, f.name) for f in fields(self)
                  if f.name not in ("counts", "exit_run")}
        values["lava_accuracy"] = self.accuracy
        return values


def write_result(path: str | Path, result: SimulationResult) -> Path:
    """The run's per-layer counts as a spike-count file (``neurokd.energy.spike_counts``),
    with its exit's steps and counts when an exit applied."""
    if result.counts is None:
        raise NeuroKDError(f"the {result.backend} run of {result.export} kept no per-layer counts")
    return write_spike_counts(path, result.counts, result.backend, result.dataset,
                              exit=result.exit_run)
