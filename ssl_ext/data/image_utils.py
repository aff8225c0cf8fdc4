"""Small image helpers shared by the transforms: channel conversion and normalization arguments."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from PIL import Image

# ImageNet statistics, the usual choice for RGB inputs (also for grayscale repeated to RGB).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GRAY_MEAN = (0.5,)
GRAY_STD = (0.5,)


def to_channels(image, channels: int):
    """Return ``image`` (PIL or (C,H,W)/(H,W) tensor) with ``channels`` channels (1 or 3).

    Grayscale becomes RGB by repeating the channel; RGB becomes grayscale with the
    ITU-R 601 luma weights (what PIL's ``convert("L")`` uses).
    """
    if isinstance(image, Image.Image):
        mode = "L" if channels == 1 else "RGB"
        return image if image.mode == mode else image.convert(mode)
    if isinstance(image, torch.Tensor):
        if image.ndim == 2:
            image = image.unsqueeze(0)
        if image.ndim != 3 or image.shape[0] not in (1, 3, 4):
            raise ValueError(f"Expected an image tensor of shape (C, H, W) with C in 1/3/4, got {tuple(image.shape)}.")
        if image.shape[0] == 4:
            image = image[:3]
        if image.shape[0] == channels:
            return image
        if channels == 3:
            return image.expand(3, -1, -1).clone()
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32).view(3, 1, 1)
        gray = (image.float() * weights).sum(0, keepdim=True)
        return gray.round().clamp(0, 255).to(image.dtype) if not image.is_floating_point() else gray.to(image.dtype)
    raise TypeError(f"Expected a PIL image or a torch tensor, got {type(image).__name__}.")


def normalization(
    owner: str, channels: int, mean: Optional[Sequence[float]], std: Optional[Sequence[float]]
) -> Tuple[List[float], List[float]]:
    """Validated (mean, std) for ``channels``; ``None`` picks ImageNet (RGB) or 0.5/0.5 (grayscale)."""
    if channels not in (1, 3):
        raise ValueError(f"{owner}: channels must be 1 or 3, got {channels!r}.")
    mean = list(mean) if mean is not None else list(IMAGENET_MEAN if channels == 3 else GRAY_MEAN)
    std = list(std) if std is not None else list(IMAGENET_STD if channels == 3 else GRAY_STD)
    for name, values in (("mean", mean), ("std", std)):
        if len(values) != channels or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ValueError(f"{owner}: {name} must be a list of {channels} floats (one per channel), got {values!r}.")
    if any(v <= 0 for v in std):
        raise ValueError(f"{owner}: std values must be > 0, got {std!r}.")
    return [float(v) for v in mean], [float(v) for v in std]


def check_probability(owner: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{owner}: {name} must be a probability in [0, 1], got {value!r}.")
