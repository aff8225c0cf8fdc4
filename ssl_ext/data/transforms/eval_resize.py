"""``eval_resize``: the deterministic evaluation transform (resize, center crop, normalize).

The standard linear-evaluation preprocessing (as in VISSL's benchmarks and
SimCLR, arXiv:2002.05709): resize the shorter side to ``resize`` pixels, take the
central ``size x size`` crop, scale to [0, 1] and normalize. ``resize=0`` means
``resize=size`` (the whole image, squashed only if it is not square). Returns a
list with ONE view so the evaluation and training loops handle views the same way.
"""
from __future__ import annotations

from typing import List, Optional

import torch
from torchvision.transforms import v2

from registry import register_transform
from ssl_ext.data.image_utils import normalization, to_channels


@register_transform("eval_resize")
class EvalResizeTransform:
    """Resize + center crop + normalize, one view; see the module docstring."""

    def __init__(
        self,
        size: int = 32,
        resize: int = 0,
        channels: int = 3,
        mean: Optional[List[float]] = None,
        std: Optional[List[float]] = None,
    ) -> None:
        owner = "eval_resize transform"
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"{owner}: size must be a positive int, got {size!r}.")
        if isinstance(resize, bool) or not isinstance(resize, int) or (resize != 0 and resize < size):
            raise ValueError(f"{owner}: resize must be 0 (= size) or an int >= size={size}, got {resize!r}.")
        mean, std = normalization(owner, channels, mean, std)
        self.channels = channels
        self.augment = v2.Compose(
            [
                v2.ToImage(),
                v2.Resize(resize or size, antialias=True),
                v2.CenterCrop(size),
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(mean=mean, std=std),
            ]
        )

    def __call__(self, image) -> List[torch.Tensor]:
        return [self.augment(to_channels(image, self.channels)).as_subclass(torch.Tensor)]

    def __repr__(self) -> str:
        return f"EvalResizeTransform({self.augment})"
