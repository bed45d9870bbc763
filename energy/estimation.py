"""The library calls that count a student and price it: :func:`estimate` (a model and its
inputs), :func:`price_spike_counts` (a deployed run's spike-count file) and
:func:`estimate_from_options` (what ``neurokd energy report`` asks for, by the options' plain
values: a data set by name, a sample count, a spike-count file).

Each checks every argument (profile, energy model, ANN choice, file) before any counting, so
a bad one fails at once and not after a long pass over the test split. The ANN reference is
priced by the profile's ``ann_profile`` when it names one (``loihi``: an ANN does not run on
Loihi, it is priced on a 45 nm core).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from neurokd.errors import ConfigError
from neurokd.student.inputs import source_batches
from neurokd.student.sources import StudentSource, as_source

from .ann import ann_layer_events, ann_reference, check_ann, sample_of
from .count import EventCounts, count_events, eval_mode, iter_batches
from .neurobench import neurobench_metrics
from .pairing import check_pairing, one_sample_counts
from .pricing import EnergyReport, Prices, price, price_ann
from .profiles import EnergyProfile, ann_pricing_profile, load_profile
from .quantities import EnergyModel, energy_model
from .spike_counts import deployed_layout, read_spike_counts, read_spike_file


@dataclass(frozen=True)
class _Pricing:
    """The SNN's and the ANN reference's prices, checked against the profile(s) once, up front."""

    snn: Prices
    ann: Prices

    @classmethod
    def of(cls, profile, model) -> _Pricing:
        profile, model = load_profile(profile), energy_model(model)
        return cls(Prices.of(profile, model), Prices.of(ann_pricing_profile(profile), model))

    @property
    def profile(self) -> EnergyProfile:
        return self.snn.profile

    @property
    def model(self) -> EnergyModel:
        return self.snn.model

    def for_backend(self, backend: str) -> _Pricing:
        """The SNN priced with the word sizes of the hardware a deployed run ran on."""
        layout = deployed_layout(backend, self.profile.memory_layout)
        return _Pricing(Prices.of(self.profile, self.model, layout), self.ann)


def estimate(model, inputs, profile: str | Path | EnergyProfile = "45nm-fp32", ann=None, *,
             energy_model: str | EnergyModel = "compute", reporter=None,
             total: int | None = None, inputs_label: str = "",
             neurobench: bool = False) -> EnergyReport:
    """Count ``model`` on ``inputs`` (a batch tensor or an iterable of batches) and price it.

    ``model``: a checkpoint path, a ``StudentSource`` or a multi-step spikingjelly model.
    ``ann``: ``None`` (the teacher when the source has one), ``"teacher"``, ``"twin"`` (the
    student's architecture with ReLU), ``"none"``, or any ANN module. ``energy_model``: a
    name of ``ENERGY_MODELS`` (``compute``, ``memory``). ``neurobench``: also compute the
    NeuroBench metrics (``report.neurobench``). ``reporter``: a ``neurokd.runtime.progress.Reporter``
    for the progress bar over ``total`` samples.
    """
    pricing = _Pricing.of(profile, energy_model)
    source = as_source(model, purpose="count")
    check_ann(source, ann)
    return _estimate(source, inputs, pricing, ann, reporter, total, inputs_label, neurobench)


def _estimate(source: StudentSource, inputs, pricing: _Pricing, ann, reporter,
              total: int | None, inputs_label: str, neurobench: bool = False) -> EnergyReport:
    student, first = source.model, []

    def batches():
        for x in iter_batches(inputs):
            if not first:
                first.append(x)  # the ANN reference is counted on one sample of these
            yield x

    if total is None and isinstance(inputs, torch.Tensor):
        total = len(inputs)
    task = reporter.start("energy: counting events", total or 0) if reporter else None
    with eval_mode(student):
        counts = count_events(student, batches(), source.input_shape or None,
                              (lambda n: reporter.advance(task, n)) if reporter else None)
    if reporter:
        reporter.finish(task, f"{counts.samples} samples, T={counts.timesteps}")
    result = _report(counts, pricing, source.label,
                     inputs_label or f"{counts.samples} samples")
    result.model = source.description
    if neurobench:
        result.neurobench = neurobench_metrics(student, counts).to_dict()
    shape = tuple(source.input_shape) or tuple(first[0].shape[1:])
    ann_model, result.ann, result.note = ann_reference(source, ann, shape)
    if ann_model is not None:
        sample = sample_of(first[0], source.input_shape or None)
        result.ann_layers = price_ann(ann_layer_events(ann_model, sample), pricing.ann)
    return result


def _report(counts: EventCounts, pricing: _Pricing, label: str, inputs: str,
            counted_on: str = "pytorch") -> EnergyReport:
    ann_profile = pricing.ann.profile.name
    return EnergyReport(pricing.profile, label, inputs, counts.samples, counts.timesteps,
                        price(counts, pricing.snn), counted_on=counted_on,
                        energy_model=pricing.model.name,
                        memory_layout=pricing.snn.layout.name,
                        ann_profile=None if ann_profile == pricing.profile.name else ann_profile)


def price_spike_counts(path: str | Path, profile: str | Path | EnergyProfile = "45nm-fp32",
                       reference: EnergyReport | None = None, *,
                       energy_model: str | EnergyModel = "compute") -> EnergyReport:
    """The energy of a deployed run's spike-count file (``neurokd simulate --save``, any
    backend). A Lava run's memory accesses have Loihi's word sizes (``memory.LAYOUTS``).

    With a ``reference`` (the float estimate of the same student), its ANN reference is
    reused, so the ratio compares the deployed SNN with the same ANN.
    """
    pricing = _Pricing.of(profile, energy_model)
    counts, backend = read_spike_counts(path)
    return _deployed_energy(counts, backend, Path(path).name, pricing, reference)


def _deployed_energy(counts: EventCounts, backend: str, label: str, pricing: _Pricing,
                     reference: EnergyReport | None = None) -> EnergyReport:
    result = _report(counts, pricing.for_backend(backend), label,
                     f"{counts.samples} samples ({backend} run)", counted_on=backend)
    if reference is not None and reference.ann:
        result.ann, result.ann_layers = reference.ann, list(reference.ann_layers)
    else:
        result.note = "no ANN reference: give the checkpoint too to compare with its teacher"
    return result


def estimate_from_options(source: StudentSource | None, profile: str = "45nm-fp32",
                          ann: str | None = None, dataset: str | None = None,
                          data_dir: str | None = None, samples: int | None = None,
                          batch_size: int = 256, spike_counts: str | Path | None = None,
                          reporter=None, random_inputs: bool = False,
                          energy_model: str = "compute",
                          neurobench: bool = False) -> EnergyReport:
    """``neurokd energy report`` in one call: the float estimate of ``source`` on the inputs
    the options choose (``neurokd.student.inputs`` policy) and/or the energy of the deployed run in
    the ``spike_counts`` file.

    With both, the float estimate runs on as many test samples as the deployed run (unless
    ``samples`` says otherwise) and carries the deployed run's report in ``.deployed``.
    """
    pricing = _Pricing.of(profile, energy_model)
    if source is None and spike_counts is None:
        raise ConfigError("give a checkpoint, --model pkg.module:build_fn, or --from-sim "
                          "RESULT.npz")
    if source is None and neurobench:
        raise ConfigError("--neurobench needs the checkpoint or --model as well as --from-sim "
                          "(NeuroBench's static metrics read the weights)")
    deployed = stored = None
    if spike_counts is not None:  # read once, before any counting: a bad file fails at once
        stored = read_spike_file(spike_counts)
        counts, backend = stored.counts, stored.backend
        deployed = counts, backend, Path(spike_counts).name
    if source is None:
        if ann not in (None, "none"):
            raise ConfigError("--ann needs the checkpoint or --model as well as --from-sim")
        return _deployed_energy(*deployed, pricing)
    check_ann(source, ann)
    batches, total, label = source_batches(
        source, "test", samples or (counts.samples if deployed else None), batch_size,
        dataset, data_dir, random_inputs)
    if stored is not None:  # one sample through the student: refused before the counting
        check_pairing(spike_counts, stored, one_sample_counts(source, batches),
                      (source.config or {}).get("dataset"), source.description)
    result = _estimate(source, batches, pricing, ann, reporter, total, label, neurobench)
    if deployed is not None:
        result.deployed = _deployed_energy(*deployed, pricing, result)
    return result
