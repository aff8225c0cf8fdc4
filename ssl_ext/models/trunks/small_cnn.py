"""A tiny convolutional trunk for CPU tests and the digits demo.

Each stage is a 3x3 convolution, BatchNorm and ReLU (the VGG/ResNet building
block without the residual, He et al. 2016, arXiv:1512.03385); the first stage
keeps the resolution and every later stage halves it with stride 2, so 8x8
digits end at 2x2 with the default three stages and 64x64 images at 16x16.
Features are globally average-pooled, which makes the trunk independent of the
input size.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch
from torch import nn

from registry import register_trunk
from ssl_ext.models._validation import check_layer_names, positive_int, positive_int_list


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


@register_trunk("small_cnn")
class SmallCNN(nn.Module):
    """Stacked conv-BN-ReLU stages, then global average pooling.

    Args:
        in_channels: channels of the input images (1 for grayscale, 3 for RGB).
        widths: widths of the stages before the last one.
        out_dim: width of the last stage, which is the feature dimension.

    Layer names for ``extract_layers``: ``"stage1"`` ... ``"stage{len(widths)+1}"``,
    each globally average-pooled to ``(N, width)``; the last one equals ``forward``.
    """

    supports_masking = False

    def __init__(self, in_channels: int = 3, widths: List[int] = (32, 64), out_dim: int = 128) -> None:
        super().__init__()
        positive_int("in_channels", in_channels)
        stage_widths = positive_int_list("widths", widths, allow_empty=True) + [positive_int("out_dim", out_dim)]
        self.in_channels = in_channels
        self.out_dim = out_dim
        stages = []
        previous = in_channels
        for index, width in enumerate(stage_widths):
            stages.append(_conv_bn_relu(previous, width, stride=1 if index == 0 else 2))
            previous = width
        self.stages = nn.ModuleList(stages)
        self.layer_names = [f"stage{i + 1}" for i in range(len(stages))]
        self._stage_widths = stage_widths

    def layer_dims(self) -> Dict[str, int]:
        return dict(zip(self.layer_names, self._stage_widths))

    def forward(self, x: torch.Tensor, mask: bool = False) -> torch.Tensor:
        # ``mask`` is accepted so the trainer can call every trunk alike; a CNN has no tokens to drop.
        for stage in self.stages:
            x = stage(x)
        return x.mean(dim=(2, 3))

    def extract_layers(self, x: torch.Tensor, names: Sequence[str]) -> Dict[str, torch.Tensor]:
        wanted = set(check_layer_names("small_cnn", names, self.layer_names))
        features = {}
        for name, stage in zip(self.layer_names, self.stages):
            x = stage(x)
            if name in wanted:
                features[name] = x.mean(dim=(2, 3))
        return {name: features[name] for name in names}
