"""The raw-pixel floor: the image itself, resized and flattened, as the feature.

A representation that a probe on frozen features cannot beat by at least this
much has learned nothing useful at that scale (the evaluation protocol in
DESIGN.md). Registering the floor as a trunk lets every engine — feature
extraction, fast/protocol linear eval, kNN, low-shot, the benchmark suite and
even training a head — evaluate raw pixels exactly as it evaluates a trained
network, with the same data, transform and probe.

The trunk has no parameters, so there is nothing to initialise, load or train;
``MODEL.WEIGHTS_INIT`` is accepted and ignored (an empty state dict loads into it).
Shrinking averages the pixels each output pixel covers (``area``, adaptive average
pooling), so a 28x28 image read at 14x14 is the mean of each 2x2 block rather than a
sub-sampled copy; enlarging interpolates bilinearly.
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from registry import register_trunk
from ssl_ext.models._validation import check_layer_names, positive_int

LAYER = "pixels"


@register_trunk("pixels")
class PixelsTrunk(nn.Module):
    """Images ``(N, C, H, W)`` -> ``(N, C * image_size * image_size)`` raw pixel values.

    Args:
        in_channels: channels of the input images (1 for grayscale, 3 for RGB).
        image_size: side of the square the images are resized to before flattening
            (images already at that size are passed through unchanged).

    Layer name for ``extract_layers``: ``"pixels"`` (equal to ``forward``).
    """

    supports_masking = False

    def __init__(self, in_channels: int = 3, image_size: int = 16) -> None:
        super().__init__()
        self.in_channels = positive_int("pixels.in_channels", in_channels)
        self.image_size = positive_int("pixels.image_size", image_size)
        self.out_dim = in_channels * image_size * image_size
        self.layer_names = [LAYER]

    def layer_dims(self) -> Dict[str, int]:
        return {LAYER: self.out_dim}

    def forward(self, x: torch.Tensor, mask: bool = False) -> torch.Tensor:
        # ``mask`` is accepted so the trainer can call every trunk alike; pixels have no tokens to drop.
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"pixels trunk: expected images (N, {self.in_channels}, H, W), got shape {tuple(x.shape)}; "
                f"set config.MODEL.TRUNK.PARAMS.in_channels to the images' channel count."
            )
        if tuple(x.shape[2:]) != (self.image_size, self.image_size):
            size = (self.image_size, self.image_size)
            if x.shape[2] >= self.image_size and x.shape[3] >= self.image_size:
                x = F.interpolate(x, size=size, mode="area")
            else:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x.flatten(1)

    def extract_layers(self, x: torch.Tensor, names: Sequence[str]) -> Dict[str, torch.Tensor]:
        wanted = check_layer_names("pixels", names, self.layer_names)
        features = self.forward(x)
        return {name: features for name in wanted}
