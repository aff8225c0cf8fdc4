"""ResNet trunks from torchvision (He et al. 2016, arXiv:1512.03385).

Weights are never downloaded (``weights=None``): SSL pretraining starts from
random initialisation, and evaluation loads ssl_ext checkpoints. The
classification layer is removed so ``forward`` returns the globally
average-pooled ``res5`` features (512 for ResNet-18/34, 2048 for ResNet-50+).

``cifar_stem=True`` replaces the 7x7 stride-2 convolution and the max-pool with
one 3x3 stride-1 convolution, the usual change for 32x32 images (SimCLR's
CIFAR-10 set-up, Chen et al. 2020, arXiv:2002.05709): without it a 32x32 image
is 1x1 by ``res5``.
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch
from torch import nn

from registry import register_trunk
from ssl_ext.models._validation import check_layer_names, one_of, positive_int

_STEM_WIDTH = 64


def _torchvision_resnet(depth: int, zero_init_residual: bool) -> nn.Module:
    from torchvision import models

    constructor = getattr(models, f"resnet{depth}")
    return constructor(weights=None, zero_init_residual=zero_init_residual)


@register_trunk("resnet")
class ResNetTrunk(nn.Module):
    """torchvision ResNet without its classifier.

    Args:
        depth: 18, 34, 50, 101 or 152.
        in_channels: input channels (the stem convolution is rebuilt when not 3).
        cifar_stem: use a 3x3 stride-1 stem without max-pool, for small images.
        zero_init_residual: start each residual branch's last BN at zero (Goyal et al. 2017).

    Layer names for ``extract_layers`` (VISSL's names): ``"conv1"`` (after the
    stem), ``"res2"`` ... ``"res5"`` (after each residual stage). Each is
    globally average-pooled to ``(N, channels)``; ``"res5"`` equals ``forward``.
    """

    supports_masking = False
    VALID_DEPTHS = (18, 34, 50, 101, 152)

    def __init__(
        self, depth: int = 50, in_channels: int = 3, cifar_stem: bool = False, zero_init_residual: bool = False
    ) -> None:
        super().__init__()
        one_of("depth", depth, self.VALID_DEPTHS)
        positive_int("in_channels", in_channels)
        if not isinstance(cifar_stem, bool):
            raise ValueError(f"cifar_stem must be true or false, got {cifar_stem!r}")
        net = _torchvision_resnet(depth, bool(zero_init_residual))
        if cifar_stem:
            net.conv1 = nn.Conv2d(in_channels, _STEM_WIDTH, kernel_size=3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, _STEM_WIDTH, kernel_size=7, stride=2, padding=3, bias=False)
        if cifar_stem or in_channels != 3:
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.out_dim = net.fc.in_features
        net.fc = nn.Identity()
        self.depth = depth
        self.in_channels = in_channels
        # torchvision's attribute names, so torchvision state dicts (minus fc) load as they are.
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.layer_names = ["conv1", "res2", "res3", "res4", "res5"]

    def layer_dims(self) -> Dict[str, int]:
        expansion = 4 if self.depth >= 50 else 1
        return {"conv1": _STEM_WIDTH, **{f"res{i + 2}": _STEM_WIDTH * 2**i * expansion for i in range(4)}}

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def _stages(self):
        return zip(self.layer_names, (self._stem, self.layer1, self.layer2, self.layer3, self.layer4))

    def forward(self, x: torch.Tensor, mask: bool = False) -> torch.Tensor:
        # ``mask`` is accepted so the trainer can call every trunk alike; a CNN has no tokens to drop.
        for _, stage in self._stages():
            x = stage(x)
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)

    def extract_layers(self, x: torch.Tensor, names: Sequence[str]) -> Dict[str, torch.Tensor]:
        names = check_layer_names(f"resnet{self.depth}", names, self.layer_names)
        deepest = max(self.layer_names.index(n) for n in names)
        features = {}
        for index, (name, stage) in enumerate(self._stages()):
            if index > deepest:
                break
            x = stage(x)
            if name in names:
                features[name] = x.mean(dim=(2, 3))
        return {name: features[name] for name in names}
