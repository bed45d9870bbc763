"""What ``neurokd simulate`` gives back, whichever backend ran: :class:`SimulationResult`."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from neurokd.energy.count import EventCounts
from neurokd.energy.spike_counts import write_spike_counts
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
    # The export's recorded exit (rule, threshold) on this run: accuracy, mean_timesteps,
    # exit_histogram; None when the export records none.
    exit: dict | None = None

    def to_json(self) -> dict:
        """What ``--json`` writes. ``lava_accuracy`` repeats ``accuracy`` under the name the
        first version of the file used, so scripts reading it keep working."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "counts"}
        values["lava_accuracy"] = self.accuracy
        return values


def write_result(path: str | Path, result: SimulationResult) -> Path:
    """The run's per-layer counts as a spike-count file (``neurokd.energy.spike_counts``)."""
    if result.counts is None:
        raise NeuroKDError(f"the {result.backend} run of {result.export} kept no per-layer counts")
    return write_spike_counts(path, result.counts, result.backend, result.dataset)
