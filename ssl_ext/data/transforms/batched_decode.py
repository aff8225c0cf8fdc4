"""``decode_only``: what a data-loader worker does when the views are made on the training device.

With ``config.DATA.TRAIN.AUGMENT_ON=device`` the loader no longer cuts and
augments views image by image: each item becomes one uint8 ``(C, H, W)`` tensor,
converted to ``channels`` and shrunk (antialiased, aspect ratio kept) so its
longer side is at most ``max_size`` pixels, which bounds the memory a batch of
full images needs. ``ssl_ext.data.batched.collate_decoded`` pads a batch of them
into one tensor and ``ssl_ext.data.batched.build_device_augment`` turns it into
the configured transform's views.

Shrinking before cropping keeps the crop distribution: ``RandomResizedCrop``
draws area fractions and aspect ratios relative to the image, so only the
rounding of crop boxes to whole pixels changes. Choose ``max_size`` at least the
largest view size (default 512; ImageNet images are ~400x350 on average).

Input: a PIL image or a ``(C, H, W)`` / ``(H, W)`` tensor. Output: a list with ONE
uint8 tensor, so ``ViewsDataset`` and the loaders handle it like any transform.
"""
from __future__ import annotations

from typing import List

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from registry import register_transform
from ssl_ext.data.image_utils import to_channels


@register_transform("decode_only")
class DecodeOnlyTransform:
    """One uint8 image tensor, ``channels`` channels, longer side <= ``max_size``; see the module docstring."""

    def __init__(self, max_size: int = 512, channels: int = 3) -> None:
        owner = "decode_only transform"
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise ValueError(f"{owner}: max_size must be a positive int, got {max_size!r}.")
        if channels not in (1, 3):
            raise ValueError(f"{owner}: channels must be 1 or 3, got {channels!r}.")
        self.max_size, self.channels = max_size, channels

    def __call__(self, image) -> List[torch.Tensor]:
        image = to_channels(image, self.channels)
        if isinstance(image, Image.Image):
            # (H, W, C) memory seen as (C, H, W): the layout decoders produce and the batch keeps (channels-last),
            # so neither this step nor collation transposes pixels.
            pixels = np.array(image)
            tensor = torch.from_numpy(pixels[..., None] if pixels.ndim == 2 else pixels).permute(2, 0, 1)
        else:
            tensor = image
        if tensor.dtype != torch.uint8:
            tensor = (tensor.float() * 255.0).round().clamp(0, 255).to(torch.uint8)
        height, width = tensor.shape[-2:]
        longer = max(height, width)
        if longer > self.max_size:
            size = (max(1, round(height * self.max_size / longer)), max(1, round(width * self.max_size / longer)))
            tensor = F.interpolate(tensor[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
        return [tensor]

    def __repr__(self) -> str:
        return f"DecodeOnlyTransform(max_size={self.max_size}, channels={self.channels})"
