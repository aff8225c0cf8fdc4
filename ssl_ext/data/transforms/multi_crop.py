"""``multi_crop``: MSN's target, anchor and focal views of one image.

Masked Siamese Networks (Assran et al. 2022, arXiv:2204.07141) compare an
anchor view, whose patches the trunk partly drops, with a target view of the
same image, and add M small "focal" crops as extra anchors. This transform
returns, in this order::

    [target, anchor, focal_1, ..., focal_M]

The target and anchor are random resized crops at ``large_size`` (default 224,
scale (0.3, 1.0)); the focal views at ``small_size`` (default 96, scale
(0.05, 0.3), M = 10), MSN's published settings. Every view then gets, as in
MSN's (SimCLR-derived) pipeline: horizontal flip (p=0.5), colour jitter of
strength ``s`` (brightness, contrast, saturation 0.8 s, hue 0.2 s) with p=0.8,
grayscale with p=0.2, Gaussian blur with sigma uniform in ``blur_sigma`` with
p=0.5, conversion to float in [0, 1] and normalization (ImageNet statistics by
default).

Choice: the blur kernel spans +-3 sigma_max (13 taps for sigma up to 2), which
matches a full Gaussian such as PIL's filter; on views smaller than that it is
cut to the largest odd size that fits, so tiny CPU-test crops still work.

Input: a PIL image (any mode) or a ``(C, H, W)`` tensor (uint8, or float in
[0, 1]); it is converted to ``channels`` channels first, so small grayscale
images can feed an RGB trunk. With ``channels=1`` saturation, hue and grayscale
do not apply and are left out. Output: a list of ``2 + num_small_views`` float32
tensors, ``(channels, large_size, large_size)`` then ``(channels, small_size, small_size)``.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
from torchvision.transforms import v2

from registry import register_transform
from ssl_ext.data.image_utils import check_probability, normalization, to_channels

OWNER = "multi_crop transform"


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{OWNER}: {name} must be an int >= {minimum}, got {value!r}.")
    return value


def _interval(name: str, value, low: float, high: float, strict_low: bool) -> Tuple[float, float]:
    """A ``[a, b]`` pair with ``low (<|<=) a <= b <= high``."""
    pair = list(value) if isinstance(value, (list, tuple)) else None
    if (
        pair is None
        or len(pair) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair)
        or not (pair[0] > low if strict_low else pair[0] >= low)
        or not pair[0] <= pair[1] <= high
    ):
        bracket = "(" if strict_low else "["
        raise ValueError(
            f"{OWNER}: {name} must be a pair [a, b] with a <= b inside {bracket}{low}, {high}], got {value!r}."
        )
    return float(pair[0]), float(pair[1])


def blur_kernel_size(view_size: int, max_sigma: float) -> int:
    """Odd kernel spanning +-3 ``max_sigma``, cut to the largest odd size below ``view_size``."""
    full = 2 * math.ceil(3 * max_sigma) + 1
    fits = view_size - 1 if view_size % 2 == 0 else view_size
    return max(1, min(full, fits))


@register_transform("multi_crop")
class MultiCropTransform:
    """[target, anchor, M focal views]; see the module docstring.

    Args:
        large_size, large_scale: side and area-fraction range of the target and anchor crops.
        small_size, small_scale: side and area-fraction range of the focal crops.
        num_small_views: M, the number of focal views (0 allowed).
        hflip_prob: probability of a horizontal flip.
        jitter_strength: colour-jitter strength s (0 disables the jitter).
        jitter_prob, grayscale_prob, blur_prob: probabilities of those augmentations.
        blur_sigma: range of the blur's standard deviation, in pixels.
        channels: output channels, 1 or 3.
        mean, std: per-channel normalization (default ImageNet for 3 channels, 0.5/0.5 for 1).
    """

    def __init__(
        self,
        large_size: int = 224,
        large_scale: List[float] = (0.3, 1.0),
        small_size: int = 96,
        small_scale: List[float] = (0.05, 0.3),
        num_small_views: int = 10,
        hflip_prob: float = 0.5,
        jitter_strength: float = 1.0,
        jitter_prob: float = 0.8,
        grayscale_prob: float = 0.2,
        blur_prob: float = 0.5,
        blur_sigma: List[float] = (0.1, 2.0),
        channels: int = 3,
        mean: Optional[List[float]] = None,
        std: Optional[List[float]] = None,
    ) -> None:
        _positive_int("large_size", large_size)
        _positive_int("small_size", small_size)
        _positive_int("num_small_views", num_small_views, minimum=0)
        large_scale = _interval("large_scale", large_scale, 0.0, 1.0, strict_low=True)
        small_scale = _interval("small_scale", small_scale, 0.0, 1.0, strict_low=True)
        blur_sigma = _interval("blur_sigma", blur_sigma, 0.0, math.inf, strict_low=True)
        if isinstance(jitter_strength, bool) or not isinstance(jitter_strength, (int, float)) or jitter_strength < 0:
            raise ValueError(f"{OWNER}: jitter_strength must be a number >= 0, got {jitter_strength!r}.")
        for name, value in (
            ("hflip_prob", hflip_prob),
            ("jitter_prob", jitter_prob),
            ("grayscale_prob", grayscale_prob),
            ("blur_prob", blur_prob),
        ):
            check_probability(OWNER, name, value)
        mean, std = normalization(OWNER, channels, mean, std)

        self.channels = channels
        self.large_size = large_size
        self.small_size = small_size
        self.num_small_views = num_small_views
        shared = dict(
            hflip_prob=hflip_prob,
            jitter_strength=float(jitter_strength),
            jitter_prob=jitter_prob,
            grayscale_prob=grayscale_prob,
            blur_prob=blur_prob,
            blur_sigma=blur_sigma,
            mean=mean,
            std=std,
        )
        self.large_view = self._view_pipeline(large_size, large_scale, **shared)
        self.small_view = self._view_pipeline(small_size, small_scale, **shared)

    def _view_pipeline(
        self,
        size: int,
        scale: Tuple[float, float],
        hflip_prob: float,
        jitter_strength: float,
        jitter_prob: float,
        grayscale_prob: float,
        blur_prob: float,
        blur_sigma: Tuple[float, float],
        mean: Sequence[float],
        std: Sequence[float],
    ) -> v2.Compose:
        s = jitter_strength
        rgb = self.channels == 3
        steps = [
            v2.ToImage(),
            v2.RandomResizedCrop(size, scale=scale, antialias=True),
            v2.RandomHorizontalFlip(p=hflip_prob),
        ]
        if s > 0:
            chroma = dict(saturation=0.8 * s, hue=min(0.2 * s, 0.5)) if rgb else {}
            steps.append(v2.RandomApply([v2.ColorJitter(brightness=0.8 * s, contrast=0.8 * s, **chroma)], p=jitter_prob))
        if rgb:
            steps.append(v2.RandomGrayscale(p=grayscale_prob))
        kernel = blur_kernel_size(size, blur_sigma[1])
        if blur_prob > 0 and kernel > 1:
            steps.append(v2.RandomApply([v2.GaussianBlur(kernel, sigma=blur_sigma)], p=blur_prob))
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean=list(mean), std=list(std))]
        return v2.Compose(steps)

    def __call__(self, image) -> List[torch.Tensor]:
        image = to_channels(image, self.channels)
        large = [self.large_view(image).as_subclass(torch.Tensor) for _ in range(2)]
        small = [self.small_view(image).as_subclass(torch.Tensor) for _ in range(self.num_small_views)]
        return large + small

    def __repr__(self) -> str:
        return (
            f"MultiCropTransform(2 x {self.large_size}px, {self.num_small_views} x {self.small_size}px, "
            f"channels={self.channels})"
        )
