"""Feature losses: ``Head(student_shape, teacher_shape, **params)`` is an ``nn.Module`` whose
``forward(student_features, teacher_features)`` returns its weighted term.

The heads (projections, generators) are trained with the student but never saved with it.
Student features are the tapped map averaged over time (a firing-rate map, ``[B, ...]``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError


class HintLoss(nn.Module):
    """FitNets (Romero et al., ICLR 2015): a 1x1 projection of the student's features regresses
    the teacher's (MSE, times ``feature_weight``). Spatial sizes are matched by average pooling
    the larger map."""

    def __init__(self, student_shape: torch.Size, teacher_shape: torch.Size,
                 feature_weight: float = 1.0):
        super().__init__()
        self.project = _projection(student_shape, teacher_shape)
        self.feature_weight = feature_weight

    def forward(self, student_features: torch.Tensor, teacher_features: torch.Tensor):
        projected, target = _aligned(self.project(student_features), teacher_features)
        return self.feature_weight * F.mse_loss(projected, target)


class BlurredLoss(nn.Module):
    """Blurred KD (BKDSNN, Xu et al., ECCV 2024): the student's features are projected, a random
    share of positions is replaced by a learned blur token, and a small generator must restore
    the teacher's features from what is left (MSE, times ``feature_weight``). ``mask_ratio`` is
    the blurred share."""

    def __init__(self, student_shape: torch.Size, teacher_shape: torch.Size,
                 feature_weight: float = 1.0, mask_ratio: float = 0.15):
        super().__init__()
        self.project = _projection(student_shape, teacher_shape)
        channels = teacher_shape[1]
        self.feature_weight, self.mask_ratio = feature_weight, mask_ratio
        self.token = nn.Parameter(torch.zeros(1, channels, *([1] * (len(teacher_shape) - 2))))
        if len(teacher_shape) == 4:
            self.generate = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                                          nn.Conv2d(channels, channels, 3, padding=1))
        else:
            self.generate = nn.Sequential(nn.Linear(channels, channels), nn.ReLU(),
                                          nn.Linear(channels, channels))

    def forward(self, student_features: torch.Tensor, teacher_features: torch.Tensor):
        projected, target = _aligned(self.project(student_features), teacher_features)
        keep_shape = (projected.shape[0], 1, *projected.shape[2:])
        keep = (torch.rand(keep_shape, device=projected.device) >= self.mask_ratio).to(projected)
        blurred = projected * keep + self.token * (1 - keep)
        return self.feature_weight * F.mse_loss(self.generate(blurred), target)


def _projection(student_shape: torch.Size, teacher_shape: torch.Size) -> nn.Module:
    if student_shape is None or teacher_shape is None:
        raise ValueError("feature losses need the tapped student and teacher feature shapes")
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
