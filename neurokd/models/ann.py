"""ANN teachers: torchvision ResNets adapted to small images (3x3 stem, no max-pool)."""

from __future__ import annotations

from torch import nn

from ..data.encoding import time_average


class _TimeAverage:
    """Forward pre-hook: frames or spikes ``[T, B, ...]`` reach the ANN as their mean over T
    (a hook, not a wrapper, so the state_dict keys stay torchvision's)."""

    def __init__(self, input_shape):
        self.input_shape = tuple(input_shape)

    def __call__(self, module, args):
        return (time_average(args[0], self.input_shape), *args[1:])


def torchvision_resnet(depth: int, input_shape, num_classes: int) -> nn.Module:
    from torchvision import models

    builder = {18: models.resnet18, 34: models.resnet34}[depth]
    net = builder(weights=None, num_classes=num_classes)  # never downloads weights
    # CIFAR-style stem: small images lose too much to a 7x7/2 conv and a max-pool.
    net.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    net.register_forward_pre_hook(_TimeAverage(input_shape))
    return net
