"""``distill(config) -> Result``: teacher, spiking student, loss, checkpoint. The CLI calls this."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import FORMAT, TEACHER_FORMAT, load_checkpoint, save_checkpoint, save_teacher
from .config import RunConfig, to_toml
from .data import DataBundle, Indexed, load_data, make_loader
from .errors import CheckpointError
from .fileio import write_json, write_text
from .losses import NEEDS_TEACHER, get_loss
from .models import build_student, build_teacher, count_parameters
from .progress import Reporter
from .training import evaluate, fit, logits_of, predict, resolve_device


@dataclass
class Result:
    """What a run produced; ``metrics`` is also written to ``metrics.json``."""

    config: RunConfig
    run_dir: Path
    checkpoint: Path
    metrics: dict[str, Any]
    student: nn.Module
    teacher: nn.Module | None


@dataclass
class Teacher:
    model: nn.Module | None
    accuracy: float | None
    config: dict[str, Any]  # teacher_arch / teacher_width of the model actually used
    trained_here: bool = False


def distill(config: RunConfig, reporter: Reporter | None = None) -> Result:
    """Train (or load) the teacher, distil the student, write the run folder."""
    reporter = reporter or Reporter()
    started = time.perf_counter()
    device = resolve_device(config.device)
    data = load_data(config.dataset, config.data_dir, config.val_fraction, config.augment,
                     config.image_size)
    config = dataclasses.replace(config, input_shape=list(data.input_shape),
                                 num_classes=data.num_classes)
    torch.manual_seed(config.seed)
    teacher = _prepare_teacher(config, data, device, reporter)
    config = dataclasses.replace(config, **teacher.config)
    train_loader = make_loader(Indexed(data.train), config.batch_size, shuffle=True,
                               seed=config.seed)
    val_loader = make_loader(data.val, 256)
    test_loader = make_loader(data.test, 256)
    cached = _cached_teacher_logits(teacher.model, data, device, config.method)
    loss_fn = get_loss(config.method, alpha=config.alpha, tau=config.tau, lam=config.lam)

    torch.manual_seed(config.seed)
    student = build_student(config.to_dict()).to(device)

    def batch_loss(batch):
        x, y, index = (t.to(device) for t in batch)
        student_logits = predict_sequence(student, x)
        teacher_logits = None
        if config.method in NEEDS_TEACHER:
            teacher_logits = cached[index] if cached is not None else _teacher_logits(teacher.model, x)
        return loss_fn(student_logits, teacher_logits, y)

    fitted = fit(student, train_loader, val_loader, batch_loss, config.epochs, config.lr,
                 config.weight_decay, device, reporter, "student")
    accuracy, firing_rate = evaluate(student, test_loader, device)
    metrics = {
        "student_accuracy": accuracy, "teacher_accuracy": teacher.accuracy,
        "firing_rate": firing_rate, "method": config.method, "timesteps": config.timesteps,
        "epochs": config.epochs, "best_epoch": fitted.best_epoch,
        "student_val_accuracy": fitted.best_val_accuracy, "dataset": config.dataset,
        "alpha": config.alpha, "tau": config.tau, "lam": config.lam, "seed": config.seed,
        "student_parameters": count_parameters(student),
        "teacher_parameters": count_parameters(teacher.model) if teacher.model else None,
        "device": str(device), "history": fitted.history,
        "wall_time_s": round(time.perf_counter() - started, 3),
    }
    run_dir = config.run_dir
    if teacher.trained_here:
        save_teacher(run_dir / "teacher.pt", config.to_dict(), _cpu_state(teacher.model),
                     {"accuracy": teacher.accuracy}, data.class_names)
    checkpoint = save_checkpoint(
        run_dir / "student.pt", config.to_dict(), _cpu_state(student),
        _cpu_state(teacher.model) if teacher.model else None, metrics, data.class_names)
    write_json(run_dir / "metrics.json", metrics)
    write_text(run_dir / "config.toml", to_toml(config.to_dict()))
    return Result(config, run_dir, checkpoint, metrics, student.eval(),
                  teacher.model.eval() if teacher.model else None)


def train_teacher(config: RunConfig, reporter: Reporter | None = None) -> Path:
    """Train only the teacher of ``config``; writes RUN_DIR/teacher.pt for ``--teacher`` reuse."""
    reporter = reporter or Reporter()
    data = load_data(config.dataset, config.data_dir, config.val_fraction, config.augment,
                     config.image_size)
    config = dataclasses.replace(config, input_shape=list(data.input_shape),
                                 num_classes=data.num_classes, method="kd", teacher=None)
    teacher = _prepare_teacher(config, data, resolve_device(config.device), reporter)
    return save_teacher(config.run_dir / "teacher.pt", config.to_dict(),
                        _cpu_state(teacher.model), {"accuracy": teacher.accuracy},
                        data.class_names)


def predict_sequence(student: nn.Module, x: torch.Tensor) -> torch.Tensor:
    from spikingjelly.activation_based import functional

    functional.reset_net(student)
    return student(x)


def _teacher_logits(teacher: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # Augmented batches differ every epoch, so the (eval-mode) teacher runs on each of them.
    with torch.inference_mode():
        logits = predict(teacher.eval(), x)
    return logits.clone()  # a normal tensor, usable by autograd-recorded ops


def _cached_teacher_logits(teacher: nn.Module | None, data: DataBundle, device: torch.device,
                           method: str) -> torch.Tensor | None:
    """Teacher logits for every training sample, once, when inputs are the same every epoch."""
    if teacher is None or method not in NEEDS_TEACHER or data.augmented:
        return None
    return logits_of(teacher, make_loader(data.train, 256), device)


def _prepare_teacher(config: RunConfig, data: DataBundle, device: torch.device,
                     reporter: Reporter) -> Teacher:
    if config.teacher:
        return _load_teacher(config, data, device)
    if config.method not in NEEDS_TEACHER:
        return Teacher(None, None, {})
    torch.manual_seed(config.seed)
    model = build_teacher(config.to_dict()).to(device)
    train_loader = make_loader(data.train, config.batch_size, shuffle=True, seed=config.seed)

    def batch_loss(batch):
        x, y = batch[0].to(device), batch[1].to(device)
        return F.cross_entropy(model(x), y)

    fit(model, train_loader, make_loader(data.val, 256), batch_loss, config.teacher_epochs,
        config.teacher_lr, config.weight_decay, device, reporter, "teacher")
    accuracy, _ = evaluate(model, make_loader(data.test, 256), device)
    return Teacher(model.eval(), accuracy, {}, trained_here=True)


def _load_teacher(config: RunConfig, data: DataBundle, device: torch.device) -> Teacher:
    """A teacher from ``teacher.pt`` or from the teacher inside a ``student.pt``."""
    stored = load_checkpoint(config.teacher, formats=(TEACHER_FORMAT, FORMAT))
    if stored.get("teacher") is None:
        raise CheckpointError(f"{config.teacher}: this checkpoint holds no teacher")
    saved = stored["config"]
    if list(saved.get("input_shape") or []) != list(data.input_shape) or \
            saved.get("num_classes") != data.num_classes:
        raise CheckpointError(
            f"{config.teacher}: teacher was trained on input {saved.get('input_shape')} with "
            f"{saved.get('num_classes')} classes, but {config.dataset} has "
            f"{list(data.input_shape)} and {data.num_classes}")
    arch = {"teacher_arch": saved["teacher_arch"], "teacher_width": saved["teacher_width"]}
    model = build_teacher({**config.to_dict(), **arch})
    try:
        model.load_state_dict(stored["teacher"])
    except RuntimeError as exc:
        raise CheckpointError(f"{config.teacher}: teacher weights do not fit "
                              f"{arch['teacher_arch']}: {str(exc).splitlines()[0]}") from None
    model = model.to(device).eval()
    accuracy, _ = evaluate(model, make_loader(data.test, 256), device)
    return Teacher(model, accuracy, arch)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
