"""The ANN reference: the teacher, or the student's architecture with ReLU, counted in MACs.

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

from neurokd.errors import NeuroKDError

from .count import eval_mode, model_root

_COUNTED = (nn.Conv1d, nn.Conv2d, nn.Linear)


def ann_macs(ann: nn.Module, sample: torch.Tensor) -> list[tuple[str, int]]:
    """``(layer name, MACs)`` per conv/linear of ``ann`` on one input ``[1, ...]``, in run order."""
    counted: dict[str, int] = {}

    def hook_for(name: str):
        def hook(module, _args, out):
            fan_in = module.in_features if isinstance(module, nn.Linear) \
                else module.weight[0].numel()
            counted[name] = counted.get(name, 0) + fan_in * out.numel()
        return hook

    root = model_root(ann)
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
    from neurokd.sources import DirectEncoding

    twin = copy.deepcopy(model_root(model)).cpu().eval()
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
