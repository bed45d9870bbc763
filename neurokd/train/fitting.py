"""The fit loop: Adam or SGD on a cosine schedule, best-validation weights, resumable at any step.

At the end of every epoch, and when SIGINT / SIGTERM arrive (after the current step), the whole
training state goes to ``last.pt`` atomically: weights, optimiser, schedule, best weights so far,
history, the data-order generator as it was at the start of the epoch, the position in the
epoch and the global RNG. Resuming rebuilds the same batch order and skips the batches already
done, so a resumed CPU run ends with the same weights as an uninterrupted one.

``batch_loss`` returns a ``LossValue``; each history entry is ``{"epoch", "loss",
"val_accuracy", "terms"}`` where ``loss`` is the epoch mean of the total and ``terms`` the epoch
mean of each of its terms (e.g. ``{"ce": .., "kl": .., "entropy": ..}``), which add up to
``loss`` up to rounding. A spiking model's entry also has ``val_accuracy_by_timestep``: the
validation accuracy of the prediction from the first t timesteps, t = 1..T (its last element
is ``val_accuracy``).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from ..errors import Interrupted, NeuroKDError, TrainingError
from ..files.safe_io import write_atomic
from ..losses import LossValue
from ..runtime.progress import Reporter
from ..runtime.signals import StopFlag
from .distributed import World
from .evaluation import evaluate_layers, recalibrate_batchnorm

STATE_FORMAT = "neurokd.train-state"


@dataclass
class Step:
    """What one training step gives back: the loss (total and terms) and, for the training
    accuracy of the epoch, how many of its ``samples`` were predicted right."""

    loss: LossValue
    correct: torch.Tensor | None = None   # a 0-d tensor, read with the loss in one copy
    samples: int = 0
    # {layer: input spike rate} of the step (0-d tensors): the epoch means go to the history's
    # ``input_rates`` (the rate term's layers, docs/energy-aware.md)
    rates: dict[str, torch.Tensor] | None = None


@dataclass
class FitResult:
    best_epoch: int
    best_val_accuracy: float
    history: list[dict] = field(default_factory=list)


@dataclass
class FitSettings:
    epochs: int
    lr: float
    weight_decay: float
    label: str
    state_path: Path | None = None  # where last.pt goes (None: no saving)
    detect_anomaly: bool = False
    optimizer: str = "adam"
    momentum: float = 0.9
    amp: bool = False  # float16 autocast + gradient scaling (CUDA only)
    run_config: dict | None = None  # the run's settings, kept in last.pt to check a resume
    num_classes: int | None = None  # for the chance-accuracy check
    # keys every history record carries (the rate term's ``rate_targets`` in force), asked for
    # at the end of each epoch, so each epoch says what it trained towards
    record_extra: Callable[[], dict] | None = None
    # called with the epoch number before the first step of each epoch (not before the rest of
    # an epoch resumed mid-way): the rate term reprices its break-even targets there
    epoch_start: Callable[[int], None] | None = None
    # The training split in order, without augmentation: BatchNorm's statistics are recomputed
    # from it before each evaluation (evaluation.recalibrate_batchnorm); None: they are not.
    bn_loader: DataLoader | None = None

    def make_optimizer(self, params) -> torch.optim.Optimizer:
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum,
                                   weight_decay=self.weight_decay)
        return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)


class _Run:
    """The mutable state of one fit: what last.pt holds."""

    def __init__(self, model: nn.Module, settings: FitSettings, loader: DataLoader, world: World,
                 extra: nn.Module | None = None):
        self.model, self.settings, self.loader, self.world = model, settings, loader, world
        self.extra = extra if extra is not None else nn.Module()
        self.optimizer = settings.make_optimizer(
            list(model.parameters()) + list(self.extra.parameters()))
        self.scaler = torch.amp.GradScaler("cuda", enabled=settings.amp)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer,
                                                                    T_max=settings.epochs)
        self.best_state = copy.deepcopy(model.state_dict())
        self.result = FitResult(0, -1.0)
        self.epoch, self.step, self.loss_sum = 1, 0, 0.0  # position: next epoch, steps done
        # Per-term sums of this epoch; None when resumed from a last.pt that did not keep them
        # mid-epoch (its means would cover only the resumed steps, so none are recorded).
        self.term_sums: dict[str, float] | None = {}
        self.rate_sums: dict[str, float] | None = {}  # likewise, of Step.rates
        # training accuracy and time of the epoch so far (kept across an interruption)
        self.train_correct, self.train_seen, self.epoch_seconds = 0.0, 0, 0.0
        self.first_loss: float | None = None  # of the very first step: the divergence yardstick
        self.silent_warned = False  # the silent-student note is said once per phase
        self.epoch_generator = self._generator_state()

    def _generator_state(self) -> torch.Tensor | None:
        generator = self.loader.generator
        return generator.get_state() if generator is not None else None

    def state(self) -> dict[str, Any]:
        return {"format": STATE_FORMAT, "version": 1, "label": self.settings.label,
                "run_config": self.settings.run_config,
                "epoch": self.epoch, "step": self.step, "loss_sum": self.loss_sum,
                "term_sums": self.term_sums, "rate_sums": self.rate_sums,
                "train_correct": self.train_correct,
                "train_seen": self.train_seen, "epoch_seconds": self.epoch_seconds,
                "first_loss": self.first_loss,
                "model": self.model.state_dict(), "extra": self.extra.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "best_state": self.best_state,
                "best_epoch": self.result.best_epoch,
                "best_val_accuracy": self.result.best_val_accuracy,
                "history": self.result.history, "epoch_generator": self.epoch_generator,
                "torch_rng": torch.get_rng_state()}

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.extra.load_state_dict(state.get("extra") or {})
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.best_state = state["best_state"]
        self.result = FitResult(state["best_epoch"], state["best_val_accuracy"],
                                list(state["history"]))
        self.epoch, self.step, self.loss_sum = state["epoch"], state["step"], state["loss_sum"]
        self.term_sums = state.get("term_sums", {} if self.step == 0 else None)
        self.rate_sums = state.get("rate_sums", {} if self.step == 0 else None)
        self.train_correct = float(state.get("train_correct", 0.0))
        self.train_seen = int(state.get("train_seen", 0))
        self.epoch_seconds = float(state.get("epoch_seconds", 0.0))
        self.first_loss = state.get("first_loss")
        self.epoch_generator = state["epoch_generator"]
        torch.set_rng_state(state["torch_rng"])

    def save(self) -> None:
        if self.settings.state_path is not None and self.world.is_main:
            state = self.state()
            write_atomic(self.settings.state_path, lambda tmp: torch.save(state, tmp))

    def batches(self) -> Iterator[Any]:
        """This epoch's batches from the saved generator state, skipping those already done."""
        if self.epoch_generator is not None:
            self.loader.generator.set_state(self.epoch_generator)
        if isinstance(self.loader.sampler, DistributedSampler):
            self.loader.sampler.set_epoch(self.epoch)  # the same order on every rank
        order = iter(self.loader.batch_sampler)
        for _ in range(self.step):
            next(order)
        for indices in order:
            yield self.loader.collate_fn([self.loader.dataset[i] for i in indices])


def load_state(path: Path, label: str) -> dict[str, Any] | None:
    """A saved training state for phase ``label``, or None when there is none."""
    from ..files.torch_file import read_torch_file

    if not path.exists():
        return None
    state = read_torch_file(path)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or \
            state.get("label") != label:
        raise NeuroKDError(f"{path}: not a neurokd training state for the {label}")
    return state


def fit(model: nn.Module, loader: DataLoader, val_loader: DataLoader, batch_loss: Callable,
        settings: FitSettings, device: torch.device, reporter: Reporter,
        stop: StopFlag | None = None, resume: dict[str, Any] | None = None,
        world: World | None = None, extra: nn.Module | None = None) -> FitResult:
    """Train, keep (and finally load) the weights of the best validation epoch.

    ``model`` is the bare module (its state is what gets saved); ``batch_loss`` may run it
    through a DistributedDataParallel wrapper, which shares its parameters. ``extra`` holds
    parameters trained alongside (feature-distillation heads): optimised and kept in last.pt,
    but not part of the model.
    """
    run = _Run(model, settings, loader, world or World(), extra)
    if resume is not None:
        run.restore(resume)
    stop = stop or StopFlag()
    anomaly = torch.autograd.set_detect_anomaly(True) if settings.detect_anomaly \
        else contextlib.nullcontext()
    with anomaly:
        while run.epoch <= settings.epochs:
            if settings.epoch_start is not None and run.step == 0:
                settings.epoch_start(run.epoch)
            task = _train_epoch(run, batch_loss, reporter, stop)
            _end_epoch(run, task, val_loader, device, reporter)
    model.load_state_dict(run.best_state)
    return run.result


def _train_epoch(run: _Run, batch_loss: Callable, reporter: Reporter, stop: StopFlag) -> Any:
    settings = run.settings
    run.model.train()
    run.extra.train()
    task = reporter.start(f"{settings.label} epoch {run.epoch}/{settings.epochs}",
                          len(run.loader))
    reporter.advance(task, run.step)
    started = time.perf_counter()
    for batch in run.batches():
        with torch.autocast("cuda", dtype=torch.float16, enabled=settings.amp):
            step = batch_loss(batch)
        step = step if isinstance(step, Step) else Step(step)
        value, terms, correct, rates = _read_step(step)
        if not math.isfinite(value):
            raise TrainingError(
                f"{settings.label}: loss became {value} at epoch {run.epoch}, step "
                f"{run.step + 1}; the last good state stays in {settings.state_path} "
                "(lower --lr, check the inputs, or use --detect-anomaly)")
        _check_divergence(run, value)
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(step.loss.total).backward()  # a pass-through when amp is off
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.step, run.loss_sum = run.step + 1, run.loss_sum + value
        run.train_correct, run.train_seen = run.train_correct + correct, \
            run.train_seen + step.samples
        if run.term_sums is not None:
            for name, term in zip(step.loss.terms, terms, strict=True):
                run.term_sums[name] = run.term_sums.get(name, 0.0) + term
        if run.rate_sums is not None:
            for name, rate in rates.items():
                run.rate_sums[name] = run.rate_sums.get(name, 0.0) + rate
        reporter.advance(task, status=f"loss {run.loss_sum / run.step:.4f}")
        if stop.signum is not None:
            run.epoch_seconds += time.perf_counter() - started
            run.save()
            where = settings.state_path.parent if settings.state_path else None
            hint = f"; resume with: neurokd distill --resume {where}" if where else ""
            raise Interrupted(f"interrupted during {settings.label} epoch {run.epoch}, step "
                              f"{run.step}; state saved{hint}", stop.signum)
    run.epoch_seconds += time.perf_counter() - started
    return task


DIVERGED = 1000.0   # a loss this many times the first step's has run away
WARM_UP_EPOCHS = 3  # after these, accuracy still at chance means the training is broken


def _check_divergence(run: _Run, value: float) -> None:
    """Stop a run whose loss has grown by orders of magnitude since its first step (a
    learning rate far too high): finite, so the NaN check would let it finish at chance."""
    if run.first_loss is None:
        run.first_loss = value
        return
    yardstick = max(abs(run.first_loss), 1e-3)
    if abs(value) > DIVERGED * yardstick:
        raise TrainingError(
            f"{run.settings.label}: training diverged at epoch {run.epoch}, step "
            f"{run.step + 1}: the loss is {value:.3g}, {abs(value) / yardstick:,.0f} times its "
            f"first value {run.first_loss:.3g}; lower --lr (the last good state stays in "
            f"{run.settings.state_path})")


def _check_chance(run: _Run, record: dict) -> None:
    classes = run.settings.num_classes
    if not classes or run.epoch < WARM_UP_EPOCHS:
        return
    chance = 1.0 / classes
    train, val = record.get("train_accuracy"), record["val_accuracy"]
    if val <= 1.25 * chance and (train is None or train <= 1.25 * chance):
        raise TrainingError(
            f"{run.settings.label}: still at chance accuracy after epoch {run.epoch} "
            f"(validation {100 * val:.1f}%, chance {100 * chance:.1f}% for {classes} "
            "classes): check --lr and the inputs")


def _check_silent(run: _Run, record: dict, reporter: Reporter) -> None:
    """Say once, naming what to do, when a student is right in training but silent and at
    chance in evaluation: with few steps per epoch BatchNorm's running statistics lag the
    weights (measured: 87% in training, 10% on validation after 12 epochs of 2 steps)."""
    classes, train = run.settings.num_classes, record.get("train_accuracy")
    rate = record.get("firing_rate")
    if run.silent_warned or not classes or train is None or rate is None:
        return
    chance = 1.0 / classes
    if train >= 3 * chance and record["val_accuracy"] <= 1.25 * chance and rate < 1e-3:
        run.silent_warned = True
        steps = len(run.loader)
        fix = ("BatchNorm statistics are recomputed each epoch: check the inputs of the "
               "evaluation splits" if run.settings.bn_loader is not None else
               f"with {steps} steps per epoch BatchNorm's running statistics lag the weights: "
               "recompute them each epoch (--recompute-bn always) or use a smaller "
               "--batch-size")
        reporter.note(f"{run.settings.label}: silent in evaluation after epoch {run.epoch} "
                      f"(firing rate {rate:.4f}, validation {100 * record['val_accuracy']:.1f}%"
                      f", chance {100 * chance:.1f}%) while training reaches {100 * train:.1f}%"
                      f"; {fix}")


def _read_step(step: Step) -> tuple[float, list[float], float, dict[str, float]]:
    """The total, the terms, the correct count and the input rates as floats, in one
    device-to-host copy."""
    rates = step.rates or {}
    values = [step.loss.total.detach().float(), *(t.detach().float() for t in
                                                   step.loss.terms.values()),
              *(r.detach().float() for r in rates.values())]
    if step.correct is not None:
        values.append(step.correct.detach().float())
    numbers = torch.stack(values).tolist()
    correct = numbers.pop() if step.correct is not None else 0.0
    read_rates = dict(zip(rates, numbers[len(numbers) - len(rates):], strict=True))
    return numbers[0], numbers[1:len(numbers) - len(rates)], correct, read_rates


def _end_epoch(run: _Run, task: Any, val_loader: DataLoader, device: torch.device,
               reporter: Reporter) -> None:
    started = time.perf_counter()
    lr = float(run.optimizer.param_groups[0]["lr"])  # the rate this epoch trained with
    run.scheduler.step()
    if run.settings.bn_loader is not None:
        recalibrate_batchnorm(run.model, run.settings.bn_loader, device)
    run.world.sync_buffers(run.model)
    val = evaluate_layers(run.model, val_loader, device, run.world)
    steps = max(run.step, 1)
    correct, seen = run.world.sum(run.train_correct, run.train_seen)
    record = {"epoch": run.epoch, "loss": run.loss_sum / steps,
              "train_accuracy": correct / seen if seen else None,
              "val_accuracy": val.accuracy, "firing_rate": val.firing_rate,
              "layer_firing_rates": val.layer_firing_rates, "lr": lr}
    if val.accuracy_by_timestep is not None:  # a spiking model: after steps 1..t, t = 1..T
        record["val_accuracy_by_timestep"] = val.accuracy_by_timestep
    if run.term_sums is not None:
        record["terms"] = {name: total / steps for name, total in run.term_sums.items()}
    if run.rate_sums:
        record["input_rates"] = {name: total / steps for name, total in run.rate_sums.items()}
    if run.settings.record_extra is not None:
        record.update(run.settings.record_extra())
    record["epoch_seconds"] = round(run.epoch_seconds + time.perf_counter() - started, 3)
    run.result.history.append(record)
    if val.accuracy > run.result.best_val_accuracy:
        run.result.best_epoch, run.result.best_val_accuracy = run.epoch, val.accuracy
        run.best_state = copy.deepcopy(run.model.state_dict())
    train = "" if record["train_accuracy"] is None else \
        f", train {100 * record['train_accuracy']:.2f}%"
    rate = "" if val.firing_rate is None else f", rate {val.firing_rate:.4f}"
    reporter.finish(task, f"loss {record['loss']:.4f}{train}, val {100 * val.accuracy:.2f}%"
                          f"{rate}, lr {lr:.3g}, {record['epoch_seconds']:.1f} s")
    reporter.epoch(run.settings.label, record)
    _check_chance(run, record)
    _check_silent(run, record, reporter)
    run.epoch, run.step, run.loss_sum, run.term_sums = run.epoch + 1, 0, 0.0, {}
    run.rate_sums = {}
    run.train_correct, run.train_seen, run.epoch_seconds = 0.0, 0, 0.0
    run.epoch_generator = run._generator_state()
    run.save()
