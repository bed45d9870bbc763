"""The ANN reference: the teacher, or the student's architecture with ReLU, counted in MACs.

``--ann`` chooses it (:data:`ANN_CHOICES`, :func:`check_ann`, :func:`ann_reference`);
:func:`ann_layer_events` records it for the counters of ``quantities.py``.

An ANN multiplies every weight with every input whatever its value, so its MACs per inference
are fan-in x outputs of each conv/linear layer, a function of shapes alone: one sample of the
same inputs gives the exact count for all of them. BatchNorm is not counted as an operation (it
folds into the conv before it at inference: a bias, which the memory model prices), nor are
ReLUs (a compare, like the SNN's threshold is part of its neuron update).
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch
from spikingjelly.activation_based import neuron
from torch import nn

from neurokd.data.encoding import DirectEncoding, unwrap_encoding
from neurokd.errors import ConfigError, NeuroKDError
from neurokd.student.sources import StudentSource
from neurokd.text import first_line

from .count import LayerEvents, count_events, eval_mode

ANN_CHOICES = ("teacher", "twin", "none")


def check_ann(source: StudentSource, ann) -> None:
    """Refuse an impossible ANN choice before any counting starts."""
    if isinstance(ann, nn.Module) or ann is None:
        return
    if ann not in ANN_CHOICES:
        raise ConfigError(f"--ann must be one of {', '.join(ANN_CHOICES)}, not {ann!r}")
    if ann == "teacher" and source.teacher is None:
        raise ConfigError(f"--ann teacher: {source.label} has no teacher (a --model source or a "
                          "checkpoint saved without one); use --ann twin")


def ann_reference(source: StudentSource, ann,
                  input_shape: tuple[int, ...]) -> tuple[nn.Module | None, str | None, str]:
    """``(ANN module or None, what it is, a note for the report)`` for an ``--ann`` choice."""
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
    return relu_twin(source.model, input_shape), "ReLU twin of the student", ""


def ann_layer_events(ann: nn.Module, sample: torch.Tensor) -> list[LayerEvents]:
    """The ANN reference's conv/linear layers on one input ``[1, ...]``, in run order, as the
    counters see them: analog input whatever its values (an ANN multiplies every input),
    outputs written to memory (no neuron holds them)."""
    try:
        with eval_mode(ann):
            counts = count_events(ann, [sample.float()])
    except RuntimeError as exc:
        raise NeuroKDError(f"the ANN reference does not run on the inputs "
                           f"{tuple(sample.shape[1:])}: {first_line(exc)}") from None
    except NeuroKDError as exc:
        raise NeuroKDError(f"the ANN reference: {exc}") from None
    return [replace(layer, spiking_input=False, writes_outputs=True)
            for layer in counts.layers if layer.geometry is not None]


def ann_macs(ann: nn.Module, sample: torch.Tensor) -> list[tuple[str, int]]:
    """``(layer name, MACs)`` per conv/linear of ``ann`` on one input ``[1, ...]``, in run order."""
    return [(layer.name, layer.frames * layer.geometry.macs_per_frame)
            for layer in ann_layer_events(ann, sample)]


def relu_twin(model: nn.Module, input_shape: tuple[int, ...]) -> nn.Module:
    """A copy of a user's multi-step model with every spiking neuron replaced by ReLU, run at T=1.

    (A neurokd checkpoint's twin is ``build_student(config, spiking=False)`` instead.)
    """
    twin = copy.deepcopy(unwrap_encoding(model)).cpu().eval()
    replaced = 0
    for name, module in list(twin.named_modules()):
        if isinstance(module, neuron.BaseNode) and name:
            parent, _, child = name.rpartition(".")
            setattr(twin.get_submodule(parent) if parent else twin, child, nn.ReLU())
            replaced += 1
    if not replaced:
        raise NeuroKDError("--ann twin: the model has no spikingjelly neuron to replace by ReLU")
    return DirectEncoding(twin, tuple(input_shape), 1)


def sample_of(first_batch: torch.Tensor, input_shape: tuple[int, ...] | None) -> torch.Tensor:
    """One static sample ``[1, ...]`` of a batch; event data ``[T, B, ...]`` is averaged over T."""
    if input_shape is not None and first_batch.dim() == len(input_shape) + 2:
        return first_batch[:, :1].float().mean(0)
    return first_batch[:1]
