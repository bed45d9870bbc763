"""Does a deployed run's spike-count file belong to the student it is priced beside?

``energy report CKPT --from-sim RESULT.npz`` compares the two: a result of another model would
print a meaningless SNN/ANN ratio. The student is run on one sample of its inputs (its layers'
shapes come from a forward pass, as the counting does) and the file must match it: the same
data set (when the file records it), the same timesteps, the same chain of conv/dense layers
with the same output shapes and, where the backend records the student's module paths (Lava:
the netx metadata keeps them; ONNX names layers after its weight initializers), the same
names. Input shapes are not compared: the Loihi export folds an average pool into the layer
after it, which then reads the pool's input.
"""

from __future__ import annotations

from pathlib import Path

import torch

from neurokd.data.encoding import batch_axis
from neurokd.errors import NeuroKDError
from neurokd.student.sources import StudentSource

from .count import EventCounts, count_events, eval_mode, iter_batches
from .spike_counts import SpikeCountFile

BACKENDS_WITHOUT_MODULE_NAMES = ("onnx",)


def one_sample_counts(source: StudentSource, batches) -> EventCounts:
    """The student's counts on the first sample of ``batches`` (for its layers' shapes)."""
    x = next(iter_batches(batches), None)
    if x is None:
        raise NeuroKDError("no input samples to count on")
    shape = tuple(source.input_shape) or tuple(x.shape[1:])
    x = x.narrow(batch_axis(x, shape), 0, 1)
    with eval_mode(source.model), torch.no_grad():
        return count_events(source.model, [x], source.input_shape or None)


def check_pairing(path: str | Path, stored: SpikeCountFile, student: EventCounts,
                  dataset: str | None, label: str) -> None:
    """Refuse ``stored`` if it is not a run of ``student`` (``label`` names it), saying what
    differs."""
    differences = []
    if stored.dataset and dataset and stored.dataset != dataset:
        differences.append(f"data set {stored.dataset} (the student's: {dataset})")
    if stored.counts.timesteps != student.timesteps:
        differences.append(f"T={stored.counts.timesteps} (the student's: T={student.timesteps})")
    ran = [layer for layer in stored.counts.layers if layer.geometry is not None]
    model = [layer for layer in student.layers if layer.geometry is not None]
    if len(ran) != len(model):
        differences.append(f"{len(ran)} conv/dense layers ({', '.join(x.name for x in ran)}; "
                           f"the student has {len(model)}: "
                           f"{', '.join(x.name for x in model)})")
    else:
        compare_names = stored.backend not in BACKENDS_WITHOUT_MODULE_NAMES
        for ours, theirs in zip(model, ran, strict=True):
            differences.extend(_layer_differences(ours, theirs, compare_names))
    if differences:
        more = f" (and {len(differences) - 1} more differences)" if len(differences) > 1 else ""
        raise NeuroKDError(f"{path} is not a run of {label}: it has {differences[0]}{more}")


def _layer_differences(ours, theirs, compare_names: bool) -> list[str]:
    found = []
    if compare_names and ours.name != theirs.name:
        found.append(f"layer {theirs.name} where the student has {ours.name}")
    if ours.geometry.kind != theirs.geometry.kind:
        found.append(f"a {theirs.geometry.kind} layer {theirs.name} where the student has "
                     f"the {ours.geometry.kind} layer {ours.name}")
    elif tuple(ours.geometry.output_shape) != tuple(theirs.geometry.output_shape):
        found.append(f"layer {theirs.name} of output {tuple(theirs.geometry.output_shape)} "
                     f"(the student's {ours.name}: {tuple(ours.geometry.output_shape)})")
    return found
