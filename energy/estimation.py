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
from .count import EventCounts, count_events, count_events_with_exit, eval_mode, iter_batches
from .neurobench import neurobench_metrics
from .pairing import check_pairing, one_sample_counts
from .pricing import EnergyReport, Prices, price, price_ann
from .profiles import EnergyProfile, ann_pricing_profile, load_profile
from .quantities import EnergyModel, energy_model
from .spike_counts import ExitRun, SpikeCountFile, deployed_layout, read_spike_file


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


@dataclass(frozen=True)
class ExitChoice:
    """The early exit an estimate prices: a rule of ``neurokd.anytime.EXIT_RULES`` and its
    threshold (checked when made), and where they came from (``given``: the caller's options;
    ``run``: the exit the run recorded in its metrics.json, or an export in its metadata;
    ``simulation``: the exit a spike-count file was saved with, ``simulate --save``).

        >>> ExitChoice.of("confidence", 0.9).threshold
        0.9
    """

    rule: str
    threshold: float
    origin: str = "given"

    @classmethod
    def of(cls, rule: str, threshold: float, origin: str = "given") -> ExitChoice:
        from neurokd.anytime import check_threshold, get_rule

        try:
            return cls(get_rule(rule).name, check_threshold(rule, threshold), origin)
        except ConfigError as exc:
            raise ConfigError(f"--exit-threshold: {exc}") from None


def exit_choice(source: StudentSource | None, rule: str | None, threshold: float | None,
                no_exit: bool = False) -> ExitChoice | None:
    """What ``energy report`` prices: ``--exit-rule R --exit-threshold C`` when given, else the
    exit the run recorded (a checkpoint of a run trained with ``--exit-rule``), else none;
    ``--no-exit`` prices all T steps whatever the run recorded."""
    return choose_exit(source.exit if source is not None else None, rule, threshold, no_exit)


def choose_exit(recorded: dict | None, rule: str | None, threshold: float | None,
                no_exit: bool = False) -> ExitChoice | None:
    """:func:`exit_choice` with the recorded exit given directly (a checked ``exit`` record,
    e.g. an export's metadata, or None): the options' exit, else the recorded one (origin
    ``run``), else none; ``--no-exit``: none. Bad options: ConfigError, one line."""
    if no_exit and (rule is not None or threshold is not None):
        raise ConfigError("--no-exit prices all T timesteps: drop --exit-rule/--exit-threshold")
    if (rule is None) != (threshold is None):
        raise ConfigError("--exit-rule and --exit-threshold go together (a rule and its "
                          "threshold c)")
    if no_exit:
        return None
    if rule is not None:
        return ExitChoice.of(rule, threshold)
    return ExitChoice.of(recorded["rule"], recorded["threshold"], "run") if recorded else None


def estimate(model, inputs, profile: str | Path | EnergyProfile = "45nm-fp32", ann=None, *,
             energy_model: str | EnergyModel = "compute", reporter=None,
             total: int | None = None, inputs_label: str = "",
             neurobench: bool = False, exit: ExitChoice | None = None) -> EnergyReport:
    """Count ``model`` on ``inputs`` (a batch tensor or an iterable of batches) and price it.

    ``model``: a checkpoint path, a ``StudentSource`` or a multi-step spikingjelly model.
    ``ann``: ``None`` (the teacher when the source has one), ``"teacher"``, ``"twin"`` (the
    student's architecture with ReLU), ``"none"``, or any ANN module. ``energy_model``: a
    name of ``ENERGY_MODELS`` (``compute``, ``memory``). ``neurobench``: also compute the
    NeuroBench metrics (``report.neurobench``). ``reporter``: a ``neurokd.runtime.progress.Reporter``
    for the progress bar over ``total`` samples. ``exit``: an :class:`ExitChoice`; each sample
    is then priced up to its exit step (``report.layers``, ``snn_energy_pj``) and at full T
    (``report.full_layers``, ``snn_energy_full_pj``). Labelled batches ``(x, y)`` also give
    ``report.accuracy_by_timestep`` (and the exit's accuracy).

        >>> # estimate("runs/demo/student.pt", x, "loihi", exit=ExitChoice.of("margin", 0.5))
    """
    pricing = _Pricing.of(profile, energy_model)
    source = as_source(model, purpose="count")
    check_ann(source, ann)
    return _estimate(source, inputs, pricing, ann, reporter, total, inputs_label, neurobench,
                     exit)


def _estimate(source: StudentSource, inputs, pricing: _Pricing, ann, reporter,
              total: int | None, inputs_label: str, neurobench: bool = False,
              exit: ExitChoice | None = None) -> EnergyReport:
    student, first, outputs = source.model, [], []

    def batches():
        # Whole batches pass on, labels included: they give the accuracy by timestep.
        for batch in (inputs.split(128) if isinstance(inputs, torch.Tensor) else inputs):
            if not first:
                first.append(next(iter_batches([batch])))  # the ANN reference's sample
            yield batch

    if total is None and isinstance(inputs, torch.Tensor):
        total = len(inputs)
    task = reporter.start("energy: counting events", total or 0) if reporter else None
    progress = (lambda n: reporter.advance(task, n)) if reporter else None
    with eval_mode(student):
        if exit is None:
            counts = count_events(student, batches(), source.input_shape or None, progress,
                                  outputs)
        else:
            both = count_events_with_exit(student, batches(), exit.rule, exit.threshold,
                                          source.input_shape or None, progress)
            counts = both.exited
    if reporter:
        reporter.finish(task, f"{counts.samples} samples, T={counts.timesteps}")
    result = _report(counts, pricing, source.label,
                     inputs_label or f"{counts.samples} samples")
    if exit is None:
        logits = torch.cat([out for out, _ in outputs], dim=1) if outputs else None
        labels = None if any(y is None for _, y in outputs) or not outputs \
            else torch.cat([y for _, y in outputs])
    else:
        logits, labels = both.logits, both.labels
        result.full_layers = price(both.full, pricing.snn)
        result.exit = exit_summary(exit, both.steps, logits, labels)
    if logits is not None and labels is not None and logits.dim() == 3:
        from neurokd.anytime import accuracy_by_timestep

        result.accuracy_by_timestep = accuracy_by_timestep(logits, labels)
    result.model = source.description
    if neurobench:
        result.neurobench = neurobench_metrics(student, counts).to_dict()
    shape = tuple(source.input_shape) or tuple(first[0].shape[1:])
    ann_model, result.ann, result.note = ann_reference(source, ann, shape)
    if ann_model is not None:
        sample = sample_of(first[0], source.input_shape or None)
        result.ann_layers = price_ann(ann_layer_events(ann_model, sample), pricing.ann)
    return result


def exit_summary(exit: ExitChoice, steps: torch.Tensor, logits: torch.Tensor | None,
                 labels: torch.Tensor | None, timesteps: int | None = None) -> dict:
    """The report's ``exit`` record: the rule, where each sample stopped (``steps`` [N], 1..T)
    and, with the logits ``[T, N, K]`` and labels, the accuracy of the prediction it stopped
    with (else None). ``neurokd simulate`` reports the same record for its backends' runs."""
    from neurokd.anytime import ExitOutcome, prefix_logits

    steps = torch.as_tensor(steps, dtype=torch.int64).reshape(-1)
    chosen = torch.zeros_like(steps)  # no logits: no predictions to score
    if logits is not None:  # argmax z̄_{e_b}, what apply_rule predicts
        timesteps = logits.shape[0]
        predictions = prefix_logits(logits.detach()).argmax(-1).cpu()
        chosen = predictions.gather(0, (steps - 1).view(1, -1))[0]
    outcome = ExitOutcome(steps, chosen, timesteps)  # checks the steps: 1..T
    known = logits is not None and labels is not None
    return {"rule": exit.rule, "threshold": exit.threshold, "origin": exit.origin,
            "mean_timesteps": outcome.mean_timesteps,
            "accuracy": outcome.accuracy(torch.as_tensor(labels)) if known else None,
            "exit_histogram": outcome.histogram}


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
                       energy_model: str | EnergyModel = "compute",
                       exit: bool = True) -> EnergyReport:
    """The energy of a deployed run's spike-count file (``neurokd simulate --save``, any
    backend). A Lava run's memory accesses have Loihi's word sizes (``memory.LAYOUTS``).

    With a ``reference`` (the float estimate of the same student), its ANN reference is
    reused, so the ratio compares the deployed SNN with the same ANN. A file saved with an
    early exit is priced with it (and at full T, ``snn_energy_full_pj``) unless ``exit`` is
    False.
    """
    pricing = _Pricing.of(profile, energy_model)
    stored = read_spike_file(path)
    return _deployed_energy(stored.counts, stored.backend, Path(path).name, pricing, reference,
                            stored.exit if exit else None)


def _deployed_energy(counts: EventCounts, backend: str, label: str, pricing: _Pricing,
                     reference: EnergyReport | None = None, exit: ExitRun | None = None,
                     origin: str = "simulation") -> EnergyReport:
    """The deployed run priced; with its ``exit`` (the file's), each sample up to its exit
    step (``layers``) and at full T (``full_layers``), as :func:`estimate` prices one."""
    pricing = pricing.for_backend(backend)
    result = _report(counts if exit is None else exit.counts, pricing, label,
                     f"{counts.samples} samples ({backend} run)", counted_on=backend)
    if exit is not None:
        result.full_layers = price(counts, pricing.snn)
        result.exit = exit_summary(ExitChoice(exit.rule, exit.threshold, origin),
                                   torch.from_numpy(exit.steps), None, None, counts.timesteps)
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
                          neurobench: bool = False, exit_rule: str | None = None,
                          exit_threshold: float | None = None,
                          no_exit: bool = False) -> EnergyReport:
    """``neurokd energy report`` in one call: the float estimate of ``source`` on the inputs
    the options choose (``neurokd.student.inputs`` policy) and/or the energy of the deployed run in
    the ``spike_counts`` file.

    With both, the float estimate runs on as many test samples as the deployed run (unless
    ``samples`` says otherwise) and carries the deployed run's report in ``.deployed``.
    The exit priced is :func:`exit_choice`'s (the options', else the run's recorded one). A
    spike-count file saved with an exit (``simulate`` with an exit rule) is priced with it, and
    the float estimate beside it then prices that exit too unless the options name one; options
    naming another exit than the file's are refused (the file cannot be re-masked). A file saved
    without an exit holds no per-sample timesteps: its run is priced at full T.
    """
    pricing = _Pricing.of(profile, energy_model)
    given = exit_choice(None, exit_rule, exit_threshold, no_exit)  # refused before any file
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
    exit = _exit_beside_file(source, stored, spike_counts, given, no_exit)
    deployed_exit = None if stored is None or exit is None else stored.exit
    origin = exit.origin if exit is not None else "simulation"
    if source is None:
        if ann not in (None, "none"):
            raise ConfigError("--ann needs the checkpoint or --model as well as --from-sim")
        return _deployed_energy(*deployed, pricing, exit=deployed_exit, origin=origin)
    check_ann(source, ann)
    batches, total, label = source_batches(
        source, "test", samples or (counts.samples if deployed else None), batch_size,
        dataset, data_dir, random_inputs)
    if stored is not None:  # one sample through the student: refused before the counting
        check_pairing(spike_counts, stored, one_sample_counts(source, batches),
                      (source.config or {}).get("dataset"), source.description)
    result = _estimate(source, batches, pricing, ann, reporter, total, label, neurobench, exit)
    if deployed is not None:
        result.deployed = _deployed_energy(*deployed, pricing, result, deployed_exit, origin)
    return result


def _exit_beside_file(source: StudentSource | None, stored: SpikeCountFile | None,
                      path, given: ExitChoice | None, no_exit: bool) -> ExitChoice | None:
    """The exit priced when a spike-count file may be given (:func:`estimate_from_options`):
    the options' (``given``, which must be the file's exit when the file has one), else the
    file's (origin ``simulation``), else the run's recorded one (:func:`exit_choice`)."""
    saved = stored.exit if stored is not None else None
    if given is not None and stored is not None:
        if saved is None and source is None:
            raise ConfigError(f"--exit-rule: {path} was saved without an exit, so it holds no "
                              "per-sample timesteps to stop; simulate again with --exit-rule "
                              f"{given.rule} --exit-threshold {given.threshold:g} --save, or "
                              "give the checkpoint to price the float estimate's exit")
        if saved is not None and (saved.rule, saved.threshold) != (given.rule,
                                                                    given.threshold):
            raise ConfigError(f"--exit-rule {given.rule} --exit-threshold {given.threshold!r} "
                              f"is not the exit {path} was saved with ({saved.rule}, threshold "
                              f"{saved.threshold!r}): a spike-count file cannot be re-masked; "
                              "give the file's exit, --no-exit, or simulate again with yours")
    if no_exit or given is not None:
        return given
    if saved is not None:  # the deployed run's exit: the float estimate beside prices it too
        return ExitChoice.of(saved.rule, saved.threshold, "simulation")
    return exit_choice(source, None, None)
