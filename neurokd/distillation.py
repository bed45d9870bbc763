"""``distill(config) -> Result``: teacher, spiking student, loss, checkpoint. The CLI calls this.

A run folder holds ``config.toml`` (written first), ``last-teacher.pt`` / ``last.pt`` (training
state after every epoch, for ``--resume``), ``teacher.pt`` (as soon as the teacher is trained),
then ``student.pt`` and ``metrics.json``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional
from torch import nn

from .checkpoint import FORMAT, TEACHER_FORMAT, load_checkpoint, save_checkpoint, save_teacher
from .config import RunConfig, to_toml
from .data import DataBundle, Indexed, load_data, make_loader
from .distributed import World, world
from .errors import CheckpointError, ConfigError
from .evaluation import evaluate, resolve_device
from .features import TeacherSignal
from .fileio import make_folder, write_json, write_text
from .fitting import FitSettings, StopFlag, fit, load_state
from .losses import LossValue, Method, needs_teacher, uses_features
from .models import build_student, build_teacher, count_parameters
from .progress import Reporter


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

    def eval_loader(self, dataset) -> Any:
        return make_loader(self.world.shard(dataset), 256)


def distill(config: RunConfig, reporter: Reporter | None = None, resume: bool = False) -> Result:
    """Train (or load) the teacher, distil the student, write the run folder.

    ``resume=True`` continues the run in ``config.run_dir`` from its saved training state.
    """
    with world(config.device) as w:
        return _distill(config, reporter if w.is_main else None, resume, w)


def _distill(config: RunConfig, reporter: Reporter | None, resume: bool, w: World) -> Result:
    started = time.perf_counter()
    data = load_data(config.dataset, config.data_dir, config.val_fraction, config.augment,
                     config.image_size)
    config = dataclasses.replace(config, input_shape=list(data.input_shape),
                                 num_classes=data.num_classes)
    device = resolve_device(config.device, w.local_rank)
    if w.active and uses_features(config.method):
        raise ConfigError(f"--method {config.method} is not supported under torchrun yet (its "
                          "feature heads are trained outside DistributedDataParallel)")
    if config.amp and device.type != "cuda":
        raise ConfigError("--amp (mixed precision) needs a CUDA device; this run is on the CPU")
    if resume and not (config.run_dir / "config.toml").exists():
        raise ConfigError(f"nothing to resume in {config.run_dir} (no config.toml)")
    if config.teacher:  # a bad teacher file must fail before anything is written
        _stored_teacher(config.teacher, data, config)
    if not resume and w.is_main:
        make_folder(config.run_dir)
        write_text(config.run_dir / "config.toml", to_toml(config.to_dict()))
    with StopFlag().installed() as stop:
        ctx = _Context(config, data, device, reporter or Reporter(), stop, resume, w)
        torch.manual_seed(config.seed)
        teacher = _prepare_teacher(ctx)
        ctx.config = config = dataclasses.replace(config, **teacher.config)
        student, fitted = _train_student(ctx, teacher)
    accuracy, firing_rate = evaluate(student, ctx.eval_loader(data.test), device, w)
    metrics = {
        "student_accuracy": accuracy, "teacher_accuracy": teacher.accuracy,
        "firing_rate": firing_rate, "method": config.method, "timesteps": config.timesteps,
        "epochs": config.epochs, "best_epoch": fitted.best_epoch,
        "student_val_accuracy": fitted.best_val_accuracy, "dataset": config.dataset,
        "alpha": config.alpha, "tau": config.tau, "lam": config.lam, "ce_tau": config.ce_tau,
        "entropy_tau": config.entropy_tau, "seed": config.seed,
        "student_parameters": count_parameters(student),
        "teacher_parameters": count_parameters(teacher.model) if teacher.model else None,
        "device": str(device), "history": fitted.history,
        "teacher_history": teacher.history, "world_size": w.size,
        "rank_parameter_max_difference": w.max_parameter_difference(student),
        "wall_time_s": round(time.perf_counter() - started, 3),
    }
    checkpoint = config.run_dir / "student.pt"
    if w.is_main:
        save_checkpoint(checkpoint, config.to_dict(), _cpu_state(student),
                        _cpu_state(teacher.model) if teacher.model else None, metrics,
                        data.class_names)
        write_json(config.run_dir / "metrics.json", metrics)
    return Result(config, config.run_dir, checkpoint, metrics, student.eval(),
                  teacher.model.eval() if teacher.model else None, w.rank)


def train_teacher(config: RunConfig, reporter: Reporter | None = None) -> Path:
    """Train only the teacher of ``config``; writes RUN_DIR/teacher.pt for ``--teacher`` reuse."""
    data = load_data(config.dataset, config.data_dir, config.val_fraction, config.augment,
                     config.image_size)
    config = dataclasses.replace(config, input_shape=list(data.input_shape),
                                 num_classes=data.num_classes, method="kd", teacher=None)
    make_folder(config.run_dir)
    with StopFlag().installed() as stop:
        ctx = _Context(config, data, resolve_device(config.device), reporter or Reporter(), stop,
                       resume=(config.run_dir / "last-teacher.pt").exists())
        _prepare_teacher(ctx)
    return config.run_dir / "teacher.pt"


def _train_student(ctx: _Context, teacher: Teacher) -> tuple[nn.Module, Any]:
    config, device = ctx.config, ctx.device
    train_loader = make_loader(Indexed(ctx.data.train), config.batch_size, shuffle=True,
                               seed=config.seed, world=ctx.world)
    torch.manual_seed(config.seed)
    student = build_student(config.to_dict()).to(device)
    trained = ctx.world.wrap(student, device)
    signal = TeacherSignal(config, student, teacher.model, ctx.data, device)
    # Each part of the method takes the RunConfig fields its LossSpec lists.
    method = Method(config.method, config.to_dict(), *signal.feature_shapes())
    method.to(device)

    def batch_loss(batch) -> LossValue:
        x, y, index = (t.to(device) for t in batch)
        functional.reset_net(student)
        student_logits = trained(x)
        teacher_logits, teacher_features = signal.teacher_outputs(x, index)
        return method(student_logits, teacher_logits, y, signal.student_features(),
                      teacher_features)

    state_path = config.run_dir / "last.pt"
    resume = load_state(state_path, "student") if ctx.resume else None
    settings = FitSettings(config.epochs, config.lr, config.weight_decay, "student", state_path,
                           config.detect_anomaly, config.optimizer, config.momentum, config.amp)
    try:
        fitted = fit(student, train_loader, ctx.eval_loader(ctx.data.val), batch_loss, settings,
                     device, ctx.reporter, ctx.stop, resume, ctx.world, extra=method)
    finally:
        signal.close()
    return student, fitted


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
                               world=ctx.world)

    def batch_loss(batch) -> LossValue:
        x, y = batch[0].to(device), batch[1].to(device)
        return LossValue.of(ce=F.cross_entropy(trained(x), y))

    state_path = config.run_dir / "last-teacher.pt"
    settings = FitSettings(config.teacher_epochs, config.teacher_lr, config.weight_decay,
                           "teacher", state_path, config.detect_anomaly, config.optimizer,
                           config.momentum, config.amp)
    resume = load_state(state_path, "teacher") if ctx.resume else None
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
    stored = _stored_teacher(path, data, config)
    saved = stored["config"]
    arch = {"teacher_arch": saved["teacher_arch"], "teacher_width": saved["teacher_width"]}
    model = build_teacher({**config.to_dict(), **arch})
    try:
        model.load_state_dict(stored["teacher"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: teacher weights do not fit "
                              f"{arch['teacher_arch']}: {str(exc).splitlines()[0]}") from None
    model = model.to(device).eval()
    accuracy, _ = evaluate(model, make_loader(data.test, 256), device)
    # A teacher.pt keeps its own history; a student.pt keeps its teacher's beside its own.
    key = "history" if stored["format"] == TEACHER_FORMAT else "teacher_history"
    return Teacher(model, accuracy, arch, stored["metrics"].get(key))


def _stored_teacher(path: str | Path, data: DataBundle, config: RunConfig) -> dict[str, Any]:
    """The teacher file's contents, once it is known to fit this data set."""
    stored = load_checkpoint(path, formats=(TEACHER_FORMAT, FORMAT))
    if stored.get("teacher") is None:
        raise CheckpointError(f"{path}: this checkpoint holds no teacher")
    saved = stored["config"]
    if list(saved.get("input_shape") or []) != list(data.input_shape) or \
            saved.get("num_classes") != data.num_classes:
        raise CheckpointError(
            f"{path}: teacher was trained on input {saved.get('input_shape')} with "
            f"{saved.get('num_classes')} classes, but {config.dataset} has "
            f"{list(data.input_shape)} and {data.num_classes}")
    return stored


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
