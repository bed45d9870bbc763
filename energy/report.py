"""Counts x profile = energy: the :class:`EnergyReport` and the ``neurokd.energy.report`` API.

Every number in a report is per inference (one sample, all timesteps): totals over the run
divided by the samples counted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from neurokd.errors import ConfigError
from neurokd.sources import StudentSource, as_source

from .ann import ann_macs, relu_twin, sample_of
from .count import EventCounts, count_events, eval_mode, iter_batches, synops
from .profiles import EnergyProfile, load_profile

ANN_CHOICES = ("teacher", "twin", "none")


@dataclass
class LayerEnergy:
    """One synaptic layer (with the neurons it feeds), per inference."""

    name: str
    kind: str                         # conv | dense | neuron (neurons with no layer before)
    firing_rate: float | None         # share of input positions x timesteps holding an event
    synops: float
    macs: float
    neuron_updates: float
    active_neuron_updates: float      # updates in which the neuron spiked
    output_firing_rate: float | None  # spikes per neuron update of the neurons it feeds
    synop_energy_pj: float
    mac_energy_pj: float
    neuron_energy_pj: float
    energy_pj: float


@dataclass
class AnnLayer:
    name: str
    macs: float
    energy_pj: float


@dataclass
class EnergyReport:
    profile: EnergyProfile
    source: str                       # what was counted (checkpoint stem, model, npz file)
    inputs: str                       # what it ran on
    samples: int
    timesteps: int
    layers: list[LayerEnergy]
    counted_on: str = "pytorch"       # pytorch (float model) | lava | onnx (a deployed run)
    ann: str | None = None            # what the ANN reference is
    ann_layers: list[AnnLayer] = field(default_factory=list)
    note: str = ""
    deployed: EnergyReport | None = None

    @property
    def snn_energy_pj(self) -> float:
        return sum(layer.energy_pj for layer in self.layers)

    @property
    def ann_energy_pj(self) -> float | None:
        return sum(layer.energy_pj for layer in self.ann_layers) if self.ann else None

    @property
    def ratio(self) -> float | None:
        """SNN energy / ANN energy (below 1: the SNN spends less)."""
        ann = self.ann_energy_pj
        return None if not ann else self.snn_energy_pj / ann

    def totals(self) -> dict[str, float]:
        keys = ("synops", "macs", "neuron_updates", "active_neuron_updates", "synop_energy_pj",
                "mac_energy_pj", "neuron_energy_pj")
        return {key: sum(getattr(layer, key) for layer in self.layers) for key in keys}

    def to_dict(self) -> dict:
        """Exactly what ``--json`` writes."""
        return {
            "profile": self.profile.name, "profile_source": self.profile.source,
            "profile_costs_pj": {k: v for k, v in self.profile.to_dict().items()
                                 if k.endswith("_pj")},
            "source": self.source, "counted_on": self.counted_on, "inputs": self.inputs,
            "samples": self.samples, "timesteps": self.timesteps,
            "snn_energy_pj": self.snn_energy_pj, "ann_energy_pj": self.ann_energy_pj,
            "ratio": self.ratio, "ann": self.ann, "note": self.note, "totals": self.totals(),
            "layers": [asdict(layer) for layer in self.layers],
            "ann_layers": [asdict(layer) for layer in self.ann_layers],
            "deployed": self.deployed.to_dict() if self.deployed else None,
        }


def price(counts: EventCounts, profile: EnergyProfile) -> list[LayerEnergy]:
    """Per-inference counts and energy of every layer under ``profile``."""
    rows, n = [], counts.samples
    for layer in counts.layers:
        geometry = layer.geometry
        synaptic_ops = macs = 0.0
        if geometry is not None and layer.spiking_input:
            synaptic_ops = synops(layer.input_events, geometry) / n
        elif geometry is not None:
            macs = layer.frames * geometry.macs_per_frame / n
        updates = layer.neuron_updates / n
        active = layer.active_neuron_updates / n
        synop_pj, mac_pj = synaptic_ops * profile.synop_pj, macs * profile.mac_pj
        neuron_pj = ((updates - active) * profile.neuron_update_pj
                     + active * profile.active_neuron_update_pj)
        rows.append(LayerEnergy(
            layer.name, geometry.kind if geometry else "neuron", layer.firing_rate,
            synaptic_ops, macs, updates, active, active / updates if updates else None,
            synop_pj, mac_pj, neuron_pj, synop_pj + mac_pj + neuron_pj))
    return rows


def check_ann(source: StudentSource, ann) -> None:
    """Refuse an impossible ANN choice before any counting starts."""
    if isinstance(ann, nn.Module) or ann is None:
        return
    if ann not in ANN_CHOICES:
        raise ConfigError(f"--ann must be one of {', '.join(ANN_CHOICES)}, not {ann!r}")
    if ann == "teacher" and source.teacher is None:
        raise ConfigError(f"--ann teacher: {source.label} has no teacher (a --model source or a "
                          "checkpoint saved without one); use --ann twin")


def _ann_reference(source: StudentSource, ann, shape) -> tuple[nn.Module | None, str | None, str]:
    if isinstance(ann, nn.Module):
        return ann, type(ann).__name__, ""
    if ann == "none" or (ann is None and source.teacher is None):
        return None, None, ("no ANN reference: this source has no teacher; --ann twin counts "
                            "the same architecture with ReLU")
    if ann in (None, "teacher"):
        arch = (source.config or {}).get("teacher_arch", "")
        return source.teacher, f"teacher{f' ({arch})' if arch else ''}", ""
    if source.config:
        from neurokd.models import build_student

        return build_student(source.config, spiking=False), "ReLU twin of the student", ""
    return relu_twin(source.model, shape), "ReLU twin of the student", ""


def report(model, inputs, profile: str | Path | EnergyProfile = "45nm-fp32", ann=None,
           reporter=None, total: int | None = None, inputs_label: str = "") -> EnergyReport:
    """Count ``model`` on ``inputs`` (a batch tensor or an iterable of batches) and price it.

    ``model``: a checkpoint path, a ``StudentSource`` or a multi-step spikingjelly model.
    ``ann``: ``None`` (the teacher when the source has one), ``"teacher"``, ``"twin"`` (the
    student's architecture with ReLU), ``"none"``, or any ANN module. ``reporter``: a
    ``neurokd.progress.Reporter`` for the progress bar over ``total`` samples.
    """
    price_list = load_profile(profile)
    source = as_source(model, purpose="count")
    check_ann(source, ann)
    return estimate(source, inputs, price_list, ann, reporter, total, inputs_label)


def estimate(source: StudentSource, inputs, price_list: EnergyProfile, ann=None, reporter=None,
             total: int | None = None, inputs_label: str = "") -> EnergyReport:
    """:func:`report` once its arguments are checked (``energy.run`` checks them up front)."""
    student = source.model
    first: list[torch.Tensor] = []

    def batches():
        for x in iter_batches(inputs):
            if not first:
                first.append(x)
            yield x

    if total is None and isinstance(inputs, torch.Tensor):
        total = len(inputs)
    task = reporter.start("energy: counting events", total or 0) if reporter else None
    with eval_mode(student):
        counts = count_events(student, batches(), source.input_shape or None,
                              (lambda n: reporter.advance(task, n)) if reporter else None)
    if reporter:
        reporter.finish(task, f"{counts.samples} samples, T={counts.timesteps}")
    shape = tuple(source.input_shape) or tuple(first[0].shape[1:])
    result = EnergyReport(price_list, source.label, inputs_label or f"{counts.samples} samples",
                          counts.samples, counts.timesteps, price(counts, price_list))
    ann_model, result.ann, result.note = _ann_reference(source, ann, shape)
    if ann_model is not None:
        macs = ann_macs(ann_model, sample_of(first[0], source.input_shape or None))
        result.ann_layers = [AnnLayer(name, float(m), m * price_list.mac_pj) for name, m in macs]
    return result


def lava_report(path: str | Path, profile: str | Path | EnergyProfile = "45nm-fp32",
                reference: EnergyReport | None = None) -> EnergyReport:
    """The energy of a deployed run's recorded spike counts (``neurokd simulate`` result).

    With a ``reference`` (the float estimate of the same student), its ANN reference is
    reused, so the ratio compares the deployed SNN with the same ANN.
    """
    from .lava import read_lava_result

    price_list = load_profile(profile)
    counts, backend = read_lava_result(path)
    return deployed_report(counts, backend, Path(path).name, price_list, reference)


def deployed_report(counts: EventCounts, backend: str, label: str, price_list: EnergyProfile,
                    reference: EnergyReport | None = None) -> EnergyReport:
    """:func:`lava_report` of counts already read from the file named ``label``."""
    result = EnergyReport(price_list, label, f"{counts.samples} samples ({backend} run)",
                          counts.samples, counts.timesteps, price(counts, price_list),
                          counted_on=backend)
    if reference is not None and reference.ann:
        result.ann, result.ann_layers = reference.ann, list(reference.ann_layers)
    else:
        result.note = "no ANN reference: give the checkpoint too to compare with its teacher"
    return result
