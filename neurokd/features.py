"""Feature and hybrid distillation: hook-based taps, FitNets hints, blurred KD, the combinator.

A method name is one logit loss (``ce``, ``kd``, ``tser``, ...; ``ce`` when none is named) plus
any feature losses, joined by ``+``: ``fitnet``, ``bkd``, ``kd+fitnet``, ``tser+fitnet``. The
total is ``logit_loss + feature_weight * sum(feature losses)``. Feature heads (projections,
generators) are trained with the student but never saved with it.

Taps are module paths (torchdistill-style, e.g. ``features.8``); the student's tap output
``[T, B, ...]`` is averaged over time (a firing-rate map), the teacher's is used as is.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError
from .losses import LOSSES, NEEDS_TEACHER, get_loss

# The penultimate representation of each built-in architecture: what feeds the classifier.
STUDENT_TAPS = {"cnn": "features.8", "resnet": "layers", "resnet19": "layers",
                "resnet18": "layers"}
TEACHER_TAPS = {"cnn": "features.8", "resnet18": "layer4", "resnet34": "layer4"}


class FeatureTap:
    """Keeps the output of one module (by path) from the latest forward pass."""

    def __init__(self, model: nn.Module, path: str):
        modules = dict(model.named_modules())
        if path not in modules:
            near = [name for name in modules if name and name.split(".")[0] == path.split(".")[0]]
            raise ConfigError(f"no module {path!r} to tap in {type(model).__name__}"
                              + (f" (e.g. {', '.join(near[:4])})" if near else ""))
        self.path = path
        self.value: torch.Tensor | None = None
        self.handle = modules[path].register_forward_hook(self._keep)

    def _keep(self, module, inputs, output) -> None:
        self.value = output

    def close(self) -> None:
        self.handle.remove()


def default_taps(config: dict) -> tuple[str, str]:
    student = config.get("student_tap") or STUDENT_TAPS.get(config["student"])
    arch = config["teacher_arch"]
    teacher = config.get("teacher_tap") or (
        STUDENT_TAPS.get(config["student"]) if arch == "twin" else TEACHER_TAPS.get(arch))
    if not student or not teacher:
        raise ConfigError("feature distillation needs --student-tap and --teacher-tap "
                          "(module paths) for this architecture")
    return student, teacher


class HintLoss(nn.Module):
    """FitNets (Romero et al., ICLR 2015): a 1x1 projection of the student's features regresses
    the teacher's (MSE). Spatial sizes are matched by average pooling the larger map."""

    def __init__(self, student_shape: torch.Size, teacher_shape: torch.Size, **_: float):
        super().__init__()
        self.project = _projection(student_shape, teacher_shape)

    def forward(self, student_features: torch.Tensor, teacher_features: torch.Tensor):
        projected, target = _aligned(self.project(student_features), teacher_features)
        return F.mse_loss(projected, target)


class BlurredLoss(nn.Module):
    """Blurred KD (BKDSNN, Xu et al., ECCV 2024): the student's features are projected, a random
    share of positions is replaced by a learned blur token, and a small generator must restore
    the teacher's features from what is left (MSE). ``mask_ratio`` is the blurred share."""

    def __init__(self, student_shape: torch.Size, teacher_shape: torch.Size,
                 mask_ratio: float = 0.15, **_: float):
        super().__init__()
        self.project = _projection(student_shape, teacher_shape)
        channels = teacher_shape[1]
        self.mask_ratio = mask_ratio
        self.token = nn.Parameter(torch.zeros(1, channels, *([1] * (len(teacher_shape) - 2))))
        conv = nn.Conv2d if len(teacher_shape) == 4 else None
        if conv is None:
            self.generate = nn.Sequential(nn.Linear(channels, channels), nn.ReLU(),
                                          nn.Linear(channels, channels))
        else:
            self.generate = nn.Sequential(conv(channels, channels, 3, padding=1), nn.ReLU(),
                                          conv(channels, channels, 3, padding=1))

    def forward(self, student_features: torch.Tensor, teacher_features: torch.Tensor):
        projected, target = _aligned(self.project(student_features), teacher_features)
        keep_shape = (projected.shape[0], 1, *projected.shape[2:])
        keep = (torch.rand(keep_shape, device=projected.device) >= self.mask_ratio).to(projected)
        blurred = projected * keep + self.token * (1 - keep)
        return F.mse_loss(self.generate(blurred), target)


FEATURE_LOSSES: dict[str, type[nn.Module]] = {"fitnet": HintLoss, "bkd": BlurredLoss}


def _projection(student_shape: torch.Size, teacher_shape: torch.Size) -> nn.Module:
    if len(student_shape) == 4 and len(teacher_shape) == 4:
        return nn.Conv2d(student_shape[1], teacher_shape[1], 1, bias=False)
    if len(student_shape) == 2 and len(teacher_shape) == 2:
        return nn.Linear(student_shape[1], teacher_shape[1], bias=False)
    raise ConfigError(f"cannot match student features {tuple(student_shape)} to teacher "
                      f"features {tuple(teacher_shape)}: tap layers of the same kind")


def _aligned(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if student.dim() == 4 and student.shape[-2:] != teacher.shape[-2:]:
        size = tuple(min(a, b) for a, b in zip(student.shape[-2:], teacher.shape[-2:],
                                               strict=True))
        student, teacher = F.adaptive_avg_pool2d(student, size), F.adaptive_avg_pool2d(teacher,
                                                                                       size)
    return student, teacher


def split_method(name: str) -> tuple[str, list[str]]:
    """``"tser+fitnet"`` -> ("tser", ["fitnet"]); a method without a logit loss uses ``ce``."""
    parts = [p for p in name.split("+") if p]
    logit = [p for p in parts if p in LOSSES]
    feature = [p for p in parts if p in FEATURE_LOSSES]
    unknown = [p for p in parts if p not in LOSSES and p not in FEATURE_LOSSES]
    if unknown or len(logit) > 1 or not parts or len(set(parts)) != len(parts):
        raise ConfigError(f"method {name!r}: give at most one of {', '.join(LOSSES)} and any of "
                          f"{', '.join(FEATURE_LOSSES)}, joined by '+'")
    return (logit[0] if logit else "ce"), feature


def needs_teacher(name: str) -> bool:
    logit, feature = split_method(name)
    return logit in NEEDS_TEACHER or bool(feature)


def uses_features(name: str) -> bool:
    return bool(split_method(name)[1])


class Method(nn.Module):
    """A logit loss plus weighted feature losses; the feature heads are its parameters."""

    def __init__(self, name: str, hparams: dict[str, float], feature_weight: float = 1.0,
                 student_shape: torch.Size | None = None,
                 teacher_shape: torch.Size | None = None):
        super().__init__()
        logit, feature = split_method(name)
        self.logit_loss: Callable = get_loss(logit, **hparams)
        self.feature_weight = feature_weight
        self.heads = nn.ModuleDict({
            part: FEATURE_LOSSES[part](student_shape, teacher_shape, **hparams)
            for part in feature})

    def forward(self, student_logits, teacher_logits, targets, student_features=None,
                teacher_features=None) -> torch.Tensor:
        loss = self.logit_loss(student_logits, teacher_logits, targets)
        for head in self.heads.values():
            loss = loss + self.feature_weight * head(student_features, teacher_features)
        return loss


class TeacherSignal:
    """Per batch: the teacher's logits (and tapped features) and the student's tapped features.

    Without random augmentation the teacher's outputs are computed once per training sample and
    looked up by index; with augmentation the eval-mode teacher runs on every batch under
    ``torch.inference_mode()``.
    """

    def __init__(self, config, student: nn.Module, teacher: nn.Module | None, data, device):
        from .data import make_loader

        self.teacher, self.device = teacher, device
        self.uses_teacher = needs_teacher(config.method)
        self.student_tap = self.teacher_tap = None
        self.shapes: tuple[torch.Size | None, torch.Size | None] = (None, None)
        if uses_features(config.method):
            student_path, teacher_path = default_taps(config.to_dict())
            self.student_tap = FeatureTap(student, student_path)
            self.teacher_tap = FeatureTap(teacher, teacher_path)
            self.shapes = self._probe(student, next(iter(make_loader(data.train, 2)))[0])
        self.cache = None
        if self.uses_teacher and not data.augmented:
            self.cache = self._outputs_of(make_loader(data.train, 256))

    def feature_shapes(self) -> tuple[torch.Size | None, torch.Size | None]:
        return self.shapes

    @torch.no_grad()
    def _probe(self, student: nn.Module, x: torch.Tensor) -> tuple[torch.Size, torch.Size]:
        from spikingjelly.activation_based import functional

        was_training = student.training
        student.eval()  # no BatchNorm statistics from the probe
        functional.reset_net(student)
        student(x.to(self.device))
        student.train(was_training)
        functional.reset_net(student)
        return self.student_features().shape, self._teacher_run(x.to(self.device))[1].shape

    def _teacher_run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        from .models.snn import TimeModel
        from .training import predict

        with torch.inference_mode():
            logits = predict(self.teacher.eval(), x)
            features = self.teacher_tap.value if self.teacher_tap else None
            if features is not None and isinstance(self.teacher, TimeModel):
                features = features[0]  # built-in ANNs run their layers with a T=1 axis
        # Clones are normal tensors, usable by autograd-recorded ops.
        return logits.clone(), (features.clone() if features is not None else None)

    def _outputs_of(self, loader) -> tuple[torch.Tensor, torch.Tensor | None]:
        parts = [self._teacher_run(batch[0].to(self.device)) for batch in loader]
        logits = torch.cat([p[0] for p in parts])
        features = torch.cat([p[1] for p in parts]) if self.teacher_tap else None
        return logits, features

    def teacher_outputs(self, x: torch.Tensor, index: torch.Tensor):
        if not self.uses_teacher:
            return None, None
        if self.cache is not None:
            logits, features = self.cache
            return logits[index], (features[index] if features is not None else None)
        return self._teacher_run(x)

    def student_features(self) -> torch.Tensor | None:
        if self.student_tap is None:
            return None
        value = self.student_tap.value
        return value.mean(0)  # [T, B, ...] spikes -> firing-rate map [B, ...]

    def close(self) -> None:
        for tap in (self.student_tap, self.teacher_tap):
            if tap is not None:
                tap.close()
