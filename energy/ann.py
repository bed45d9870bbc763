"""The ANN reference: the teacher, or the student's architecture with ReLU, counted in MACs.

``--ann`` chooses it (:data:`ANN_CHOICES`, :func:`check_ann`, :func:`ann_reference`);
:func:`ann_layer_counts` is its counter, in the quantities of ``quantities.py``.

An ANN multiplies every weight with every input whatever its value, so its MACs per inference
are fan-in x outputs of each conv/linear layer, a function of shapes alone: one sample of the
same inputs gives the exact count for all of them. BatchNorm is not counted (it folds into the
conv before it at inference), nor are ReLUs (a compare, like the SNN's threshold is part of
its neuron update).
"""

from __future__ import annotations

import copy

import torch
from spikingjelly.activation_based import functional, neuron
from torch import nn

from neurokd.encoding import DirectEncoding, unwrap_encoding
from neurokd.errors import ConfigError, NeuroKDError
from neurokd.sources import StudentSource

from .count import eval_mode

_COUNTED = (nn.Conv1d, nn.Conv2d, nn.Linear)
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


def ann_layer_counts(ann: nn.Module, sample: torch.Tensor) -> list[tuple[str, dict[str, float]]]:
    """``(layer name, {quantity: units per inference})`` of the ANN reference on one sample:
    an ANN multiplies every input, so MACs are all it counts under the compute model."""
    return [(name, {"macs": float(macs)}) for name, macs in ann_macs(ann, sample)]


def ann_macs(ann: nn.Module, sample: torch.Tensor) -> list[tuple[str, int]]:
    """``(layer name, MACs)`` per conv/linear of ``ann`` on one input ``[1, ...]``, in run order."""
    counted: dict[str, int] = {}

    def hook_for(name: str):
        def hook(module, _args, out):
            fan_in = module.in_features if isinstance(module, nn.Linear) \
                else module.weight[0].numel()
            counted[name] = counted.get(name, 0) + fan_in * out.numel()
        return hook

    root = unwrap_encoding(ann)
    handles = [m.register_forward_hook(hook_for(name or type(m).__name__))
               for name, m in root.named_modules() if isinstance(m, _COUNTED)]
    try:
        with torch.no_grad():
            functional.reset_net(ann)
            device = next((p.device for p in ann.parameters()), torch.device("cpu"))
            with eval_mode(ann):
                ann(sample.float().to(device))
    except RuntimeError as exc:
        raise NeuroKDError(f"the ANN reference does not run on the inputs "
                           f"{tuple(sample.shape[1:])}: {str(exc).splitlines()[0]}") from None
    finally:
        for handle in handles:
            handle.remove()
    if not counted:
        raise NeuroKDError("the ANN reference has no conv or linear layer to count")
    return [(name, int(macs)) for name, macs in counted.items()]


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
