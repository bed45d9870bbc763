"""``distill(config) -> Result``: teacher, spiking student, loss, checkpoint. The CLI calls this.

A run folder holds ``config.toml`` (written first), ``last-teacher.pt`` / ``last.pt`` (training
state after every epoch, for ``--resume``), ``teacher.pt`` (as soon as the teacher is trained),
then ``student.pt`` and ``metrics.json``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional
from torch import nn

from ..anytime import exit_record
from ..config import BREAK_EVEN, RunConfig, to_toml
from ..data import DATASETS, DataBundle, Indexed, load_run_data, make_loader
from ..errors import CheckpointError, ConfigError
from ..files.safe_io import make_folder, write_json, write_text
from ..losses import LossValue, Method, needs_teacher, uses_features
from ..models import build_student, build_teacher, count_parameters
from ..runtime.device import resolve_device
from ..runtime.progress import EpochCallback, Reporter
from ..runtime.signals import StopFlag
from ..runtime.threads import CpuReading, ThreadChoice, choose_threads, cpu_reading
from ..runtime.threads import used as used_threads
from ..student.checkpoint import (
    FORMAT,
    TEACHER_FORMAT,
    load_checkpoint,
    save_checkpoint,
    save_teacher,
)
from ..student.loading import checked_config, checked_model
from .distributed import World, world
from .evaluation import BN_WINDOW, Evaluation, evaluate, evaluate_layers
from .features import TeacherSignal, check_taps
from .fitting import FitSettings, Step, fit, load_state
from .rates import InputRates, Pricer, RatePlan, rate_plan
from .run_folder import check_resume, claimed
from .training_log import TrainingLog


@dataclass
class Result:
    """What a run produced; ``metrics`` is also written to ``metrics.json``."""

    config: RunConfig
    run_dir: Path
    checkpoint: Path
    metrics: dict[str, Any]
    student: nn.Module
    teacher: nn.Module | None
    rank: int = 0  # under torchrun only rank 0 writes files and prints


@dataclass
class Teacher:
    model: nn.Module | None
    accuracy: float | None
    config: dict[str, Any]  # teacher_arch / teacher_width of the model actually used
    history: list[dict] | None = None  # its training epochs, where the file records them


@dataclass
class _Context:
    config: RunConfig
    data: DataBundle
    device: torch.device
    reporter: Reporter
    stop: StopFlag
    resume: bool
    world: World = World()
    threads: int | None = None  # the count chosen for this run: kept in its training state
    states: dict[str, dict] = dataclasses.field(default_factory=dict)  # of _interrupted()
    pricer: Pricer | None = None  # the energy registry's prices (rates.py), from the caller
    rate_plan: RatePlan | None = None  # the rate term's targets, once the student is built

    def eval_loader(self, dataset) -> Any:
        return make_loader(self.world.shard(dataset), 256)

    def run_settings(self) -> dict[str, Any]:
        """What a training state records of the run (checked, and its threads reused, on
        --resume)."""
        return {**self.config.to_dict(), "threads": self.threads or self.config.threads}


def distill(config: RunConfig, reporter: Reporter | None = None, resume: bool = False,
            on_epoch: Callable[[str, dict], None] | None = None,
            overwrite: bool = False, exports: tuple[str, ...] = (),
            pricer: Pricer | None = None) -> Result:
    """Train (or load) the teacher, distil the student, write the run folder.

    ``resume=True`` continues the run in ``config.run_dir`` from its saved training state.
    ``reporter`` shows progress (``neurokd.runtime.progress``: the CLI's bars and lines);
    ``on_epoch(phase, record)`` is called after every epoch with the record the history keeps
    (``phase`` is "teacher" or "student"). A folder that already holds a run is refused
    unless ``overwrite``, which removes the old run's files and the ``exports`` (file names,
    e.g. ``neurokd.exporters.registry.default_export_names()``) made from it
    (``neurokd.train.run_folder``). ``pricer`` (``neurokd.cli.rate_pricing.EnergyPricer``)
    prices the rate term's break-even targets and the finished student: metrics.json's
    ``energy`` (docs/energy-aware.md); ``--rate-target break-even`` needs one.
    """
    with world(config.device) as w:
        reporter = reporter if w.is_main else None
        if on_epoch is not None and w.is_main:
            reporter = EpochCallback(reporter or Reporter(), on_epoch)
        log = TrainingLog(config.log_dir, resume) if config.log_dir and w.is_main else None
        if log is not None:
            reporter = EpochCallback(reporter or Reporter(), log)
        try:
            return _distill(config, reporter, resume, w, overwrite, exports, pricer)
        finally:
            if log is not None:
                log.close()


def _distill(config: RunConfig, reporter: Reporter | None, resume: bool, w: World,
             overwrite: bool = False, exports: tuple[str, ...] = (),
             pricer: Pricer | None = None) -> Result:
    started = time.perf_counter()
    load_since = cpu_reading()  # other jobs' CPU use while the data loads: the free cores
    if config.teacher:  # a teacher for other data is refused before the data set is loaded
        spec = DATASETS[config.dataset]
        _stored_teacher(config.teacher, spec.sample_shape(config.to_dict()), spec.classes,
                        config)
    data = load_run_data(config, reporter).with_student_share(config.train_fraction, config.seed)
    config = dataclasses.replace(config, input_shape=list(data.input_shape),
                                 num_classes=data.num_classes)
    device = resolve_device(config.device, w.local_rank)
    states = _interrupted(config.run_dir) if resume else {}
    if resume and _finished(config.run_dir, states, config.epochs):
        # resuming retrained nothing and rewrote student.pt and metrics.json (23 s -> 4 s):
        # a finished run is left exactly as it is
        raise ConfigError(f"{config.run_dir} is a finished run (student.pt written after all "
                          f"{config.epochs} epochs): nothing to resume, nothing changed; start "
                          "a new run under another name, or overwrite this one")
    with used_threads(_choose_threads(config, w, load_since, states)) as threads:
        return _distill_with(config, data, device, threads, reporter, resume, w, started,
                             overwrite, exports, states, pricer)


def _distill_with(config: RunConfig, data: DataBundle, device: torch.device,
                  threads: ThreadChoice, reporter: Reporter | None, resume: bool, w: World,
                  started: float, overwrite: bool, exports: tuple[str, ...],
                  states: dict[str, dict], pricer: Pricer | None = None) -> Result:
    if w.active and uses_features(config.method):
        raise ConfigError(f"--method {config.method} is not supported under torchrun yet (its "
                          "feature heads are trained outside DistributedDataParallel)")
    if config.amp and device.type != "cuda":
        raise ConfigError("--amp (mixed precision) needs a CUDA device; this run is on the CPU")
    if resume and not (config.run_dir / "config.toml").exists():
        raise ConfigError(f"nothing to resume in {config.run_dir} (no config.toml)")
    if config.teacher and DATASETS[config.dataset].classes is None:
        # checked before loading but for the class count, known only now (ImageFolder): a
        # teacher for other classes must fail before anything is written
        _stored_teacher(config.teacher, data.input_shape, data.num_classes, config)
    if uses_features(config.method) and not config.teacher:  # so must a bad tap path
        check_taps(config.to_dict())
    if config.rate_target == BREAK_EVEN and pricer is None:
        raise ConfigError("--rate-target break-even needs the energy registry's prices: pass "
                          "pricer=neurokd.cli.rate_pricing.EnergyPricer(...)")
    if pricer is not None and config.ann == "teacher" and not config.teacher and \
            not needs_teacher(config.method):
        raise ConfigError(f"--ann teacher: --method {config.method} trains no teacher to "
                          "compare with; use --ann twin or give --teacher")
    with claimed(config.run_dir, resume, overwrite, w.is_main, exports):
        return _train_and_write(config, data, device, threads, reporter, resume, w, started,
                                states, pricer)


def _train_and_write(config: RunConfig, data: DataBundle, device: torch.device,
                     threads: ThreadChoice, reporter: Reporter | None, resume: bool, w: World,
                     started: float, states: dict[str, dict],
                     pricer: Pricer | None = None) -> Result:
    if not resume and w.is_main:
        write_text(config.run_dir / "config.toml", to_toml(config.to_dict()))
    with StopFlag().installed() as stop:
        ctx = _Context(config, data, device, reporter or Reporter(), stop, resume, w,
                       threads.threads, states, pricer)
        torch.manual_seed(config.seed)
        teacher = _prepare_teacher(ctx)
        ctx.config = config = dataclasses.replace(config, **teacher.config)
        student, fitted = _train_student(ctx, teacher)
    # one pass gives the accuracy and the accuracy after every timestep (its last element):
    # the same counts, so the two agree exactly
    test = evaluate_layers(student, ctx.eval_loader(data.test), device, w,
                           keep_logits=config.exit_rule is not None and not w.active)
    metrics = {
        "student_accuracy": test.accuracy, "teacher_accuracy": teacher.accuracy,
        "firing_rate": test.firing_rate, "method": config.method, "timesteps": config.timesteps,
        "accuracy_by_timestep": test.accuracy_by_timestep,
        "accuracy_at_timestep": test.accuracy_at_timestep,
        "exit": _exit_record(ctx, student, test) if config.exit_rule else None,
        "epochs": config.epochs, "best_epoch": fitted.best_epoch,
        "student_val_accuracy": fitted.best_val_accuracy, "dataset": config.dataset,
        "alpha": config.alpha, "tau": config.tau, "lam": config.lam, "ce_tau": config.ce_tau,
        "entropy_tau": config.entropy_tau, "seed": config.seed,
        "student_parameters": count_parameters(student),
        "student_train_samples": len(data.for_student().train),  # --train-fraction's share
        "teacher_parameters": count_parameters(teacher.model) if teacher.model else None,
        "device": str(device), "history": fitted.history,
        "teacher_history": teacher.history, "world_size": w.size,
        "rank_parameter_max_difference": w.max_parameter_difference(student),
        "threads": threads.threads, "threads_reason": threads.reason,
        "wall_time_s": round(time.perf_counter() - started, 3),
    }
    if ctx.rate_plan is not None:
        metrics["rate"] = {**ctx.rate_plan.to_dict(), "weight": config.rate_weight,
                           "margin": config.rate_margin}
    checkpoint = config.run_dir / "student.pt"
    if w.is_main:
        save_checkpoint(checkpoint, config.to_dict(), _cpu_state(student),
                        _cpu_state(teacher.model) if teacher.model else None, metrics,
                        data.class_names)
        if pricer is not None:  # energy report's own numbers for the file just written
            metrics["energy"] = pricer.report(checkpoint)
        write_json(config.run_dir / "metrics.json", metrics)
    return Result(config, config.run_dir, checkpoint, metrics, student.eval(),
                  teacher.model.eval() if teacher.model else None, w.rank)


def _exit_record(ctx: _Context, student: nn.Module, test: Evaluation) -> dict[str, Any]:
    """metrics.json's ``exit``: the given threshold, or one calibrated on the validation split
    (never on test), measured on both splits. The calibration needs every validation sample,
    so under torchrun each rank evaluates the whole splits again (they agree: the same
    weights and samples)."""
    config = ctx.config
    val = evaluate_layers(student, make_loader(ctx.data.val, 256), ctx.device, keep_logits=True)
    if test.logits is None:  # under torchrun, this rank's shard only
        test = evaluate_layers(student, make_loader(ctx.data.test, 256), ctx.device,
                               keep_logits=True)
    return exit_record(config.exit_rule, val.logits, val.labels, test.logits, test.labels,
                       threshold=config.exit_threshold, drop_points=config.exit_drop)


STATE_FILES = {"student": "last.pt", "teacher": "last-teacher.pt"}  # phase -> training state


def _interrupted(run_dir: Path, phases=tuple(STATE_FILES)) -> dict[str, dict]:
    """The training states an interrupted run left of ``phases``, read once: for its thread
    count and for the phase that resumes."""
    states = {label: load_state(run_dir / STATE_FILES[label], label) for label in phases}
    return {label: state for label, state in states.items() if state is not None}


def _finished(run_dir: Path, states: dict[str, dict], epochs: int) -> bool:
    """Whether ``run_dir`` holds a run that completed: student.pt is written only at the end,
    and a training state left beside it is past the last epoch."""
    if not (run_dir / "student.pt").is_file():
        return False
    state = states.get("student")
    if state is None:
        return True
    epoch = state.get("epoch")  # from a file: anything else is for the resume's own checks
    return isinstance(epoch, int) and not isinstance(epoch, bool) and epoch > epochs


def _choose_threads(config: RunConfig, w: World, since: CpuReading,
                    states: dict[str, dict]) -> ThreadChoice:
    """Threads for this run's work (neurokd.runtime.threads), applied now: before any training. A
    resumed run keeps the count it trained with, so it ends as the uninterrupted run would."""
    state = states.get("student") or states.get("teacher") or {}
    resumed = (state.get("run_config") or {}).get("threads")
    if resumed is not None and (not isinstance(resumed, int) or isinstance(resumed, bool)
                                or not 1 <= resumed <= 4096):
        raise CheckpointError(f"{config.run_dir}: the training state records {resumed!r} "
                              "threads; expected a whole number from 1 to 4096")
    return choose_threads(config.threads, w.size, since, resumed)


def train_teacher(config: RunConfig, reporter: Reporter | None = None) -> Path:
    """Train only the teacher of ``config``; writes RUN_DIR/teacher.pt for ``--teacher`` reuse."""
    data = load_run_data(config, reporter)
    config = dataclasses.replace(config, input_shape=list(data.input_shape),
                                 num_classes=data.num_classes, method="kd", teacher=None)
    make_folder(config.run_dir)
    with StopFlag().installed() as stop:
        states = _interrupted(config.run_dir, ("teacher",))
        ctx = _Context(config, data, resolve_device(config.device), reporter or Reporter(), stop,
                       resume="teacher" in states, states=states)
        _prepare_teacher(ctx)
    return config.run_dir / "teacher.pt"


def _train_student(ctx: _Context, teacher: Teacher) -> tuple[nn.Module, Any]:
    config, device = ctx.config, ctx.device
    data = ctx.data.for_student()  # its --train-fraction share; the teacher saw all of train
    train_loader = make_loader(Indexed(data.train), config.batch_size, shuffle=True,
                               seed=config.seed, world=ctx.world, transform=data.train_transform)
    torch.manual_seed(config.seed)
    student = build_student(config.to_dict()).to(device)
    trained = ctx.world.wrap(student, device)
    signal = TeacherSignal(config, student, teacher.model, data, device)
    # Each part of the method takes the RunConfig fields its LossSpec lists.
    plan = _rate_plan(ctx, student, teacher)
    method = Method(config.method, config.to_dict(), *signal.feature_shapes(),
                    rate_targets=plan.targets if plan else None)
    method.to(device)
    rates = InputRates(student, plan.targets) if plan else None

    def batch_loss(batch) -> Step:
        x, y, index = (t.to(device) for t in batch)
        functional.reset_net(student)
        student_logits = trained(x)
        teacher_logits, teacher_features = signal.teacher_outputs(x, index)
        loss = method(student_logits, teacher_logits, y, signal.student_features(),
                      teacher_features, rates=rates.values if rates else None)
        return Step(loss, (student_logits.detach().mean(0).argmax(-1) == y).sum(), len(y),
                    dict(rates.values) if rates else None)

    state_path = config.run_dir / STATE_FILES["student"]
    resume = _resumed_state(ctx, "student")
    settings = FitSettings(config.epochs, config.lr, config.weight_decay, "student", state_path,
                           config.detect_anomaly, config.optimizer, config.momentum, config.amp,
                           ctx.run_settings(), config.num_classes,
                           bn_loader=_bn_loader(ctx, data.train, train_loader),
                           record_extra=(lambda: {"rate_targets": method.rate.aims()})
                           if plan else None,
                           epoch_start=_repricing(ctx, student, teacher, method.rate)
                           if plan and plan.target == BREAK_EVEN else None)
    try:
        fitted = fit(student, train_loader, ctx.eval_loader(ctx.data.val), batch_loss, settings,
                     device, ctx.reporter, ctx.stop, resume, ctx.world, extra=method)
    finally:
        signal.close()
        if rates is not None:
            rates.close()
    return student, fitted


def _rate_plan(ctx: _Context, student: nn.Module, teacher: Teacher) -> RatePlan | None:
    """The rate term's targets (rates.py), priced on the freshly initialised student and the
    first validation batch: the same numbers again on --resume (the same seed builds the same
    student), so a resumed run trains on the targets it started with."""
    config = ctx.config
    if config.rate_target is None:
        return None
    inputs = next(iter(make_loader(ctx.data.val, 256)))[0].to(ctx.device)
    plan = rate_plan(config.to_dict(), student, teacher.model, inputs, ctx.pricer)
    ctx.rate_plan = plan
    if plan.untargeted:
        ctx.reporter.note("rate term: no target for " + "; ".join(
            f"{name} ({why})" for name, why in plan.untargeted.items()))
    return plan


def _repricing(ctx: _Context, student: nn.Module, teacher: Teacher,
               term: Any) -> Callable[[int], None]:
    """Before each epoch after the first: the break-even targets again, on the student as it
    is now. They move as the student changes (measured on the demo under loihi/compute:
    features.6's break-even went 0.059 → 0.050 over 30 epochs, so targets priced once on the
    initial student aimed above the break-even of the finished one). The layers keep their
    targets; one whose break-even leaves (0, 1) keeps its last target. last.pt keeps the
    targets in force (RateLoss's buffer), and repricing a restored student at the start of an
    epoch gives the numbers the uninterrupted run had."""
    inputs = next(iter(make_loader(ctx.data.val, 256)))[0].to(ctx.device)

    def reprice(epoch: int) -> None:
        if epoch == 1:
            return  # the plan's own prices, made on this very student
        prices = ctx.pricer.break_even(student, ctx.config.to_dict(), teacher.model, inputs)
        current = term.targets
        term.set_targets({name: float(prices[name]) if prices.get(name) is not None
                          and 0 < prices[name] < 1 else target
                          for name, target in current.items()})
        ctx.rate_plan = dataclasses.replace(ctx.rate_plan, targets=term.targets,
                                            break_even={**ctx.rate_plan.break_even, **prices})

    return reprice


def _bn_loader(ctx: _Context, train: Any, train_loader: Any) -> Any:
    """The training split in order and without augmentation, for recomputing BatchNorm's
    statistics before each evaluation (``recompute_bn``: always, or auto when an epoch has
    fewer steps than BatchNorm's averaging window); None when they are left as trained."""
    mode = ctx.config.recompute_bn
    if mode == "never" or (mode == "auto" and len(train_loader) >= BN_WINDOW):
        return None
    return make_loader(ctx.world.shard(train), ctx.config.batch_size)


def _resumed_state(ctx: _Context, label: str) -> dict[str, Any] | None:
    """The interrupted phase's training state, refused if config.toml has changed since."""
    state = ctx.states.get(label) if ctx.resume else None
    if state is not None:
        check_resume(ctx.config.to_dict(), state.get("run_config"),
                     ctx.config.run_dir / "config.toml")
    return state


def _prepare_teacher(ctx: _Context) -> Teacher:
    config, data, device = ctx.config, ctx.data, ctx.device
    own_teacher = config.run_dir / "teacher.pt"
    if config.teacher:
        return _load_teacher(config.teacher, data, device, config)
    if ctx.resume and own_teacher.exists():  # trained before the interruption
        return _load_teacher(own_teacher, data, device, config)
    if not needs_teacher(config.method):
        return Teacher(None, None, {})
    torch.manual_seed(config.seed)
    model = build_teacher(config.to_dict()).to(device)
    trained = ctx.world.wrap(model, device)
    train_loader = make_loader(data.train, config.batch_size, shuffle=True, seed=config.seed,
                               world=ctx.world, transform=data.train_transform)

    def batch_loss(batch) -> Step:
        x, y = batch[0].to(device), batch[1].to(device)
        logits = trained(x)
        return Step(LossValue.of(ce=F.cross_entropy(logits, y)),
                    (logits.detach().argmax(-1) == y).sum(), len(y))

    state_path = config.run_dir / STATE_FILES["teacher"]
    settings = FitSettings(config.teacher_epochs, config.teacher_lr, config.weight_decay,
                           "teacher", state_path, config.detect_anomaly, config.optimizer,
                           config.momentum, config.amp, ctx.run_settings(), config.num_classes,
                           bn_loader=_bn_loader(ctx, data.train, train_loader))
    resume = _resumed_state(ctx, "teacher")
    fitted = fit(model, train_loader, ctx.eval_loader(data.val), batch_loss, settings, device,
                 ctx.reporter, ctx.stop, resume, ctx.world)
    accuracy, _ = evaluate(model, ctx.eval_loader(data.test), device, ctx.world)
    if ctx.world.is_main:
        save_teacher(own_teacher, config.to_dict(), _cpu_state(model),
                     {"accuracy": accuracy, "history": fitted.history}, data.class_names)
        state_path.unlink(missing_ok=True)  # teacher.pt now holds all a resume needs
    return Teacher(model.eval(), accuracy, {}, fitted.history)


def _load_teacher(path: str | Path, data: DataBundle, device: torch.device,
                  config: RunConfig) -> Teacher:
    """A teacher from ``teacher.pt`` or from the teacher inside a ``student.pt``."""
    stored = _stored_teacher(path, data.input_shape, data.num_classes, config)
    saved = checked_config(stored["config"], path)
    arch = {"teacher_arch": saved["teacher_arch"], "teacher_width": saved["teacher_width"]}
    model = checked_model(build_teacher, {**config.to_dict(), **arch}, stored["teacher"],
                          f"{path}: teacher")
    model = model.to(device).eval()
    accuracy, _ = evaluate(model, make_loader(data.test, 256), device)
    # A teacher.pt keeps its own history; a student.pt keeps its teacher's beside its own.
    key = "history" if stored["format"] == TEACHER_FORMAT else "teacher_history"
    return Teacher(model, accuracy, arch, stored["metrics"].get(key))


def _stored_teacher(path: str | Path, input_shape: tuple[int, ...], num_classes: int | None,
                    config: RunConfig) -> dict[str, Any]:
    """The teacher file's contents, once it is known to fit samples of ``input_shape`` in
    ``num_classes`` classes (None: not known yet, not checked)."""
    stored = load_checkpoint(path, formats=(TEACHER_FORMAT, FORMAT))
    if stored.get("teacher") is None:
        raise CheckpointError(f"{path}: this checkpoint holds no teacher")
    saved = stored["config"]
    if list(saved.get("input_shape") or []) != list(input_shape) or \
            num_classes not in (None, saved.get("num_classes")):
        has = f"{list(input_shape)}" + ("" if num_classes is None else f" and {num_classes}")
        raise CheckpointError(
            f"{path}: teacher was trained on input {saved.get('input_shape')} with "
            f"{saved.get('num_classes')} classes, but {config.dataset} has {has}")
    return stored


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
