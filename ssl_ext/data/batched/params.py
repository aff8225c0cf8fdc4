"""Per-sample augmentation parameters drawn from (seed, epoch, index), vectorized over a batch.

Each sample of a batch gets its own ``torch.Generator`` seeded from
(seed, epoch, index) -- the same seed ``ViewsDataset`` gives the per-image path --
and draws one fixed block of uniforms per view (``UNIFORMS_PER_VIEW``). Every
parameter is a function of those uniforms and of the sample's image size only, so
a sample's views do not depend on which batch, position, rank or device it lands
on, and a resumed run redraws them exactly.

The mapping from uniforms to parameters reproduces torchvision v2's sampling:
``RandomResizedCrop`` (10 tries of area fraction and log aspect ratio, then the
central-crop fallback), flips, ``ColorJitter`` (independent uniform factors and a
uniformly random order of the four adjustments, per sample), grayscale, Gaussian
blur (sigma uniform, the same on both axes) and solarization, each applied with
its probability.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ssl_ext.data.batched.spec import ViewSpec

CROP_TRIES = 10
# Layout of one view's uniforms.
_AREA, _RATIO = slice(0, CROP_TRIES), slice(CROP_TRIES, 2 * CROP_TRIES)
_TOP, _LEFT, _FLIP, _JITTER = 20, 21, 22, 23
_FACTORS, _ORDER = slice(24, 28), slice(28, 32)
_GRAY, _BLUR, _SIGMA, _SOLARIZE = 32, 33, 34, 35
UNIFORMS_PER_VIEW = 36
# Value of each colour factor that leaves the image unchanged: brightness, contrast, saturation, hue.
NEUTRAL_FACTORS = (1.0, 1.0, 1.0, 0.0)


def item_seed(seed: int, epoch: int, index: int) -> int:
    """The per-item seed of ``ViewsDataset`` (one definition of where a sample's randomness comes from)."""
    return int(np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(1)[0])


def draw_uniforms(seed: int, epoch: int, indices: Sequence[int], num_views: int) -> torch.Tensor:
    """``(B, num_views, UNIFORMS_PER_VIEW)`` float64 uniforms in [0, 1), one generator per dataset index."""
    rows = []
    for index in indices:
        generator = torch.Generator().manual_seed(item_seed(seed, epoch, int(index)))
        rows.append(torch.rand(num_views, UNIFORMS_PER_VIEW, generator=generator, dtype=torch.float64))
    return torch.stack(rows) if rows else torch.empty(0, num_views, UNIFORMS_PER_VIEW, dtype=torch.float64)


@dataclass
class ViewParams:
    """Parameters of N views (one row each). ``boxes`` is ``(top, left, height, width)`` in source pixels."""

    boxes: torch.Tensor  # (N, 4) int64
    flip: torch.Tensor  # (N,) bool
    jitter: torch.Tensor  # (N,) bool
    factors: torch.Tensor  # (N, 4) float64, NEUTRAL_FACTORS where an adjustment is off
    order: torch.Tensor  # (N, 4) int64, a permutation of 0..3 per view
    grayscale: torch.Tensor  # (N,) bool
    blur: torch.Tensor  # (N,) bool
    sigma: torch.Tensor  # (N,) float64
    solarize: torch.Tensor  # (N,) bool


def _uniform(low: float, high: float, u: torch.Tensor) -> torch.Tensor:
    return low + (high - low) * u


def _randint(n: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Uniform integer in [0, n) from a uniform in [0, 1)."""
    return torch.minimum((u * n).floor().long(), n.long() - 1)


def crop_boxes(scale, ratio, u: torch.Tensor, heights: torch.Tensor, widths: torch.Tensor) -> torch.Tensor:
    """torchvision's ``RandomResizedCrop`` box for each row: ``(N, 4)`` as (top, left, height, width)."""
    h_img, w_img = heights.double()[:, None], widths.double()[:, None]
    target_area = h_img * w_img * _uniform(scale[0], scale[1], u[:, _AREA])
    aspect = torch.exp(_uniform(math.log(ratio[0]), math.log(ratio[1]), u[:, _RATIO]))
    w = torch.round(torch.sqrt(target_area * aspect))
    h = torch.round(torch.sqrt(target_area / aspect))
    fits = (w > 0) & (w <= w_img) & (h > 0) & (h <= h_img)
    first = fits.int().argmax(dim=1, keepdim=True)  # first try that fits (0 when none does)
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
    found = fits.any(dim=1)
    H, W = heights.double(), widths.double()
    top = _randint(H - h + 1, u[:, _TOP])
    left = _randint(W - w + 1, u[:, _LEFT])
    # Fallback: central crop with the aspect ratio clamped into ``ratio``.
    in_ratio = W / H
    lo, hi = min(ratio), max(ratio)
    fb_w = torch.where(in_ratio > hi, torch.round(H * hi), W)
    fb_h = torch.where(in_ratio < lo, torch.round(W / lo), H)
    h, w = torch.where(found, h, fb_h), torch.where(found, w, fb_w)
    top = torch.where(found, top.double(), torch.div(H - fb_h, 2, rounding_mode="floor"))
    left = torch.where(found, left.double(), torch.div(W - fb_w, 2, rounding_mode="floor"))
    return torch.stack([top, left, h, w], dim=1).long()


def sample_view_params(spec: ViewSpec, u: torch.Tensor, heights: torch.Tensor, widths: torch.Tensor) -> ViewParams:
    """Parameters of ``spec`` for N views from their ``(N, UNIFORMS_PER_VIEW)`` uniforms and source sizes."""
    factors = torch.tensor(NEUTRAL_FACTORS, dtype=torch.float64).repeat(u.shape[0], 1)
    for k, bounds in enumerate(spec.jitter_ranges):
        if bounds is not None:
            factors[:, k] = _uniform(bounds[0], bounds[1], u[:, _FACTORS][:, k])
    return ViewParams(
        boxes=crop_boxes(spec.scale, spec.ratio, u, heights, widths),
        flip=u[:, _FLIP] < spec.hflip_prob,
        jitter=u[:, _JITTER] < spec.jitter_prob,
        factors=factors,
        order=u[:, _ORDER].argsort(dim=1),  # argsort of i.i.d. uniforms: a uniformly random permutation
        grayscale=u[:, _GRAY] < spec.grayscale_prob,
        blur=u[:, _BLUR] < spec.blur_prob,
        sigma=_uniform(spec.blur_sigma[0], spec.blur_sigma[1], u[:, _SIGMA]),
        solarize=u[:, _SOLARIZE] < spec.solarize_prob,
    )
