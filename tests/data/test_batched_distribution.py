"""The batched path (AUGMENT_ON=device) draws the per-image path's augmentation distribution.

Reference draws come from torchvision's own v2 transforms (``make_params``, the
code the per-image path runs) with the global RNG; batched draws from
``ssl_ext.data.batched.params`` over many dataset indices. Tolerances: rates
within 4.5 binomial standard errors of the configured probability; continuous
parameters (crop area fraction and aspect ratio, jitter factors, blur sigma)
pass a two-sample Kolmogorov-Smirnov test at alpha = 0.001 (every draw is seeded,
so each test is deterministic). A last test compares whole views, made from a
real photograph by both paths, through per-view pixel statistics.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import chisquare, ks_2samp
from torchvision.transforms import v2

from ssl_ext.data.batched.augment import BatchedViews
from ssl_ext.data.batched.params import draw_uniforms, sample_view_params
from ssl_ext.data.batched.spec import view_plan
from ssl_ext.data.transforms.multi_crop import MultiCropTransform
from ssl_ext.data.transforms.two_view import TwoViewTransform

N = 4000
ALPHA = 1e-3


def batched_params(spec, height, width, n=N, seed=3):
    u = draw_uniforms(seed, 0, range(n), 1)[:, 0]
    return sample_view_params(spec, u, torch.full((n,), height), torch.full((n,), width))


def assert_rate(observed: torch.Tensor, p: float) -> None:
    n = observed.numel()
    tolerance = 4.5 * math.sqrt(max(p * (1 - p), 1e-12) / n) + 1e-12
    assert abs(observed.double().mean().item() - p) <= tolerance, (observed.double().mean().item(), p, tolerance)


def assert_same_distribution(a, b, what: str) -> None:
    result = ks_2samp(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    assert result.pvalue > ALPHA, f"{what}: KS statistic {result.statistic:.4f}, p={result.pvalue:.2e}"


@pytest.mark.parametrize("height,width,scale,ratio", [
    (375, 500, (0.3, 1.0), (3 / 4, 4 / 3)),  # MSN target/anchor views
    (375, 500, (0.05, 0.3), (3 / 4, 4 / 3)),  # MSN focal views
    (16, 16, (0.2, 1.0), (3 / 4, 4 / 3)),  # tiny digits: rounding to whole pixels matters
    (40, 300, (0.5, 1.0), (3 / 4, 4 / 3)),  # very wide: the central-crop fallback is taken often
])
def test_crop_area_and_aspect_ratio_match_torchvision(height, width, scale, ratio):
    crop = v2.RandomResizedCrop(8, scale=scale, ratio=ratio)
    spec = view_plan(TwoViewTransform(size=8, min_scale=scale[0], max_scale=scale[1]))[0][0]
    assert spec.scale == scale and spec.ratio == pytest.approx(ratio)
    torch.manual_seed(0)
    image = torch.zeros(3, height, width, dtype=torch.uint8)
    reference = np.array([[p["top"], p["left"], p["height"], p["width"]]
                          for p in (crop.make_params([image]) for _ in range(N))], dtype=np.float64)
    ours = batched_params(spec, height, width).boxes.double().numpy()
    for boxes in (reference, ours):
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 0] + boxes[:, 2] <= height).all()
        assert (boxes[:, 1] >= 0).all() and (boxes[:, 1] + boxes[:, 3] <= width).all()
    area = lambda b: b[:, 2] * b[:, 3] / (height * width)  # noqa: E731
    aspect = lambda b: b[:, 3] / b[:, 2]  # noqa: E731
    assert_same_distribution(area(reference), area(ours), "crop area fraction")
    assert_same_distribution(aspect(reference), aspect(ours), "crop aspect ratio")
    # Where the crop sits: normalised centre, horizontally and vertically.
    centre_x = lambda b: (b[:, 1] + b[:, 3] / 2) / width  # noqa: E731
    centre_y = lambda b: (b[:, 0] + b[:, 2] / 2) / height  # noqa: E731
    assert_same_distribution(centre_x(reference), centre_x(ours), "crop centre x")
    assert_same_distribution(centre_y(reference), centre_y(ours), "crop centre y")


def test_flip_jitter_grayscale_blur_and_solarize_rates_match_their_probabilities():
    spec = view_plan(MultiCropTransform(num_small_views=1))[0][0]
    params = batched_params(spec, 375, 500)
    assert_rate(params.flip, 0.5)
    assert_rate(params.jitter, 0.8)
    assert_rate(params.grayscale, 0.2)
    assert_rate(params.blur, 0.5)
    assert_rate(params.solarize, 0.0)
    # Solarization is not in the built-in transforms; a DINO-style pipeline with RandomSolarize(p=0.2).
    from ssl_ext.data.batched.spec import ViewSpec

    dino = ViewSpec.from_pipeline([v2.RandomResizedCrop(96), v2.RandomSolarize(threshold=128, p=0.2),
                                   v2.ToDtype(torch.float32, scale=True)])
    assert dino.solarize_threshold == pytest.approx(128 / 255)
    assert_rate(batched_params(dino, 375, 500).solarize, 0.2)
    # The decisions are independent of each other (no shared uniform).
    both = (params.flip & params.grayscale).double().mean().item()
    assert abs(both - 0.1) < 4.5 * math.sqrt(0.1 * 0.9 / N)


def test_jitter_factors_order_and_blur_sigma_match_torchvision():
    transform = MultiCropTransform(num_small_views=1, jitter_strength=0.7)
    pipeline = transform.large_view
    jitter = next(t.transforms[0] for t in pipeline.transforms if isinstance(t, v2.RandomApply)
                  and isinstance(t.transforms[0], v2.ColorJitter))
    blur = next(t.transforms[0] for t in pipeline.transforms if isinstance(t, v2.RandomApply)
                and isinstance(t.transforms[0], v2.GaussianBlur))
    torch.manual_seed(1)
    reference = [jitter.make_params([]) for _ in range(N)]
    sigmas = [blur.make_params([])["sigma"][0] for _ in range(N)]
    spec = view_plan(transform)[0][0]
    params = batched_params(spec, 64, 64)
    for k, name in enumerate(("brightness_factor", "contrast_factor", "saturation_factor", "hue_factor")):
        assert_same_distribution([p[name] for p in reference], params.factors[:, k].numpy(), name)
    assert_same_distribution(sigmas, params.sigma.numpy(), "blur sigma")
    # The order of the four adjustments: each of the 24 permutations equally often, as torch.randperm(4).
    perms = {p: i for i, p in enumerate(__import__("itertools").permutations(range(4)))}
    counts = np.bincount([perms[tuple(row)] for row in params.order.tolist()], minlength=24)
    reference_counts = np.bincount([perms[tuple(p["fn_idx"].tolist())] for p in reference], minlength=24)
    assert chisquare(counts).pvalue > ALPHA and chisquare(reference_counts).pvalue > ALPHA


def _photo(height=60, width=80) -> torch.Tensor:
    from PIL import Image
    from sklearn.datasets import load_sample_images

    image = Image.fromarray(load_sample_images().images[1]).resize((width, height), Image.BILINEAR)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).contiguous()


def _view_statistics(views: torch.Tensor) -> np.ndarray:
    """Per view: mean, spread, colourfulness, left-right asymmetry of the un-normalised pixels."""
    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    x = views * std + mean
    half = x.shape[-1] // 2
    return torch.stack([
        x.mean(dim=(1, 2, 3)),
        x.std(dim=(1, 2, 3)),
        (x.amax(1) - x.amin(1)).mean(dim=(1, 2)),
        x[..., :half].mean(dim=(1, 2, 3)) - x[..., -half:].mean(dim=(1, 2, 3)),
    ], dim=1).numpy()


def test_views_of_a_real_photograph_have_the_same_pixel_statistics_on_both_paths():
    transform = MultiCropTransform(large_size=24, small_size=12, num_small_views=2)
    photo = _photo()
    n = 300
    torch.manual_seed(0)
    per_image = [transform(photo) for _ in range(n)]
    batched = BatchedViews.from_transform(transform)(
        photo.expand(n, -1, -1, -1).contiguous(memory_format=torch.channels_last),
        torch.tensor([[60, 80]] * n), list(range(n)), seed=0, epoch=0,
    )
    for v in (0, 2):  # a large view and a focal view
        ours = _view_statistics(batched[v])
        reference = _view_statistics(torch.stack([views[v] for views in per_image]))
        for k, name in enumerate(("mean", "spread", "colourfulness", "asymmetry")):
            assert_same_distribution(reference[:, k], ours[:, k], f"view {v} {name}")
