"""``two_view``: SimCLR-style random augmented views of one image.

SimCLR (Chen et al., "A Simple Framework for Contrastive Learning of Visual
Representations", arXiv:2002.05709) builds each view with a random resized crop,
a horizontal flip, colour jitter (strength ``s``: brightness, contrast and
saturation ``0.8 s``, hue ``0.2 s``) applied with probability 0.8, random
grayscale with probability 0.2 and a Gaussian blur. Every size and strength is a
parameter so CPU tests can use tiny images; the blur is off by default because on
the 8x8 to 32x32 images used here it mostly erases the signal (SimCLR also drops
it for CIFAR-10).

Input: a PIL image (any mode) or a ``(C, H, W)`` image tensor. It is first
converted to ``channels`` channels (grayscale digits become RGB by repeating the
channel), so a 1-channel source can feed a 3-channel trunk. Output: a list of
``num_views`` float32 tensors ``(channels, size, size)``, normalized with
``mean``/``std`` (default ImageNet statistics for RGB, 0.5/0.5 for grayscale).
With ``channels=1``, saturation, hue and random grayscale do not apply and are
left out.
"""
from __future__ import annotations

from typing import List, Optional

import torch
from torchvision.transforms import v2

from registry import register_transform
from ssl_ext.data.image_utils import check_probability, normalization, to_channels


@register_transform("two_view")
class TwoViewTransform:
    """Random augmented views (two by default); see the module docstring."""

    def __init__(
        self,
        size: int = 32,
        num_views: int = 2,
        min_scale: float = 0.2,
        max_scale: float = 1.0,
        hflip_prob: float = 0.5,
        jitter_strength: float = 0.5,
        jitter_prob: float = 0.8,
        grayscale_prob: float = 0.2,
        blur_prob: float = 0.0,
        channels: int = 3,
        mean: Optional[List[float]] = None,
        std: Optional[List[float]] = None,
    ) -> None:
        owner = "two_view transform"
        for name, value in (("size", size), ("num_views", num_views)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}.")
        if not (isinstance(min_scale, (int, float)) and isinstance(max_scale, (int, float)) and 0 < min_scale <= max_scale <= 1):
            raise ValueError(f"{owner}: need 0 < min_scale <= max_scale <= 1, got min_scale={min_scale!r}, max_scale={max_scale!r}.")
        if isinstance(jitter_strength, bool) or not isinstance(jitter_strength, (int, float)) or jitter_strength < 0:
            raise ValueError(f"{owner}: jitter_strength must be a float >= 0, got {jitter_strength!r}.")
        for name, value in (("hflip_prob", hflip_prob), ("jitter_prob", jitter_prob), ("grayscale_prob", grayscale_prob), ("blur_prob", blur_prob)):
            check_probability(owner, name, value)
        mean, std = normalization(owner, channels, mean, std)
        self.channels = channels
        self.num_views = num_views
        s = float(jitter_strength)
        if channels == 3:
            jitter = v2.ColorJitter(brightness=0.8 * s, contrast=0.8 * s, saturation=0.8 * s, hue=min(0.2 * s, 0.5))
        else:
            jitter = v2.ColorJitter(brightness=0.8 * s, contrast=0.8 * s)
        steps = [
            v2.ToImage(),
            v2.RandomResizedCrop(size, scale=(float(min_scale), float(max_scale)), antialias=True),
            v2.RandomHorizontalFlip(p=hflip_prob),
            v2.RandomApply([jitter], p=jitter_prob),
        ]
        if channels == 3:
            steps.append(v2.RandomGrayscale(p=grayscale_prob))
        if blur_prob > 0:
            kernel = max(3, (size // 10) | 1)  # odd, ~10% of the view as in SimCLR
            steps.append(v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=blur_prob))
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=mean, std=std)]
        self.augment = v2.Compose(steps)

    def __call__(self, image) -> List[torch.Tensor]:
        image = to_channels(image, self.channels)
        return [self.augment(image).as_subclass(torch.Tensor) for _ in range(self.num_views)]

    def __repr__(self) -> str:
        return f"TwoViewTransform(num_views={self.num_views}, {self.augment})"
