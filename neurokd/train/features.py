"""Feature taps and the teacher's signal per batch: what feature and hybrid KD read.

The feature losses themselves (FitNets hints, blurred KD) are registry entries in
``neurokd.losses``. Taps are module paths (torchdistill-style, e.g. ``features.8``); the
student's tap output ``[T, B, ...]`` is averaged over time (a firing-rate map), the teacher's
is used as is.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..losses import needs_teacher, uses_features

# The penultimate representation of each built-in architecture: what feeds the classifier.
STUDENT_TAPS = {"cnn": "features.8", "resnet": "layers", "resnet19": "layers",
                "resnet18": "layers"}
TEACHER_TAPS = {"cnn": "features.8", "resnet18": "layer4", "resnet34": "layer4"}


class FeatureTap:
    """Keeps the output of one module (by path) from the latest forward pass."""

    def __init__(self, model: nn.Module, path: str, role: str = "model"):
        modules = dict(model.named_modules())
        if path not in modules:
            near = [name for name in modules if name and name.split(".")[0] == path.split(".")[0]]
            near = near or [name for name in modules if name and "." not in name]
            flag = f"--{role}-tap" if role in ("student", "teacher") else "the tap"
            raise ConfigError(f"{flag}: the {role} ({type(model).__name__}) has no module "
                              f"{path!r}" + (f"; it has e.g. {', '.join(near[:6])}" if near
                                             else ""))
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


def check_taps(config: dict) -> None:
    """Refuse a tap path the models do not have before anything is trained or written (the
    taps are only looked up once the teacher is trained otherwise)."""
    from ..models import build_student, build_teacher

    student_path, teacher_path = default_taps(config)
    for role, model, path in (("student", build_student(config), student_path),
                              ("teacher", build_teacher(config), teacher_path)):
        FeatureTap(model, path, role).close()


class TeacherSignal:
    """Per batch: the teacher's logits (and tapped features) and the student's tapped features.

    Without random augmentation the teacher's outputs are computed once per training sample and
    looked up by index; with augmentation the eval-mode teacher runs on every batch under
    ``torch.inference_mode()``.
    """

    def __init__(self, config, student: nn.Module, teacher: nn.Module | None, data, device):
        from ..data import make_loader

        self.teacher, self.device = teacher, device
        self.uses_teacher = needs_teacher(config.method)
        self.student_tap = self.teacher_tap = None
        self.shapes: tuple[torch.Size | None, torch.Size | None] = (None, None)
        if uses_features(config.method):
            student_path, teacher_path = default_taps(config.to_dict())
            self.student_tap = FeatureTap(student, student_path, "student")
            self.teacher_tap = FeatureTap(teacher, teacher_path, "teacher")
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
        from ..models.snn import TimeModel
        from .evaluation import predict

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
