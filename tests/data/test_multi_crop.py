"""multi_crop: MSN's [target, anchor, focal...] views."""
import numpy as np
import pytest
import torch
from PIL import Image

from registry import build_transform
from ssl_ext.data.transforms.multi_crop import blur_kernel_size

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
TINY = {"large_size": 16, "small_size": 8, "num_small_views": 3}


def multi_crop(**params):
    return build_transform({"NAME": "multi_crop", "PARAMS": {**TINY, **params}})


def random_gray_image(side=12, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, size=(side, side), dtype=np.uint8)
    return Image.fromarray(pixels, mode="L")


def test_default_count_and_sizes_follow_msn():
    views = build_transform("multi_crop")(Image.new("RGB", (240, 260), (30, 120, 200)))
    assert len(views) == 12
    assert [tuple(v.shape) for v in views[:2]] == [(3, 224, 224)] * 2
    assert [tuple(v.shape) for v in views[2:]] == [(3, 96, 96)] * 10


@pytest.mark.parametrize("num_small_views", [0, 1, 4])
def test_target_anchor_then_focal_views_on_a_small_grayscale_image(num_small_views):
    views = multi_crop(num_small_views=num_small_views)(random_gray_image())
    assert len(views) == 2 + num_small_views
    assert all(v.dtype == torch.float32 for v in views)
    assert [tuple(v.shape) for v in views] == [(3, 16, 16)] * 2 + [(3, 8, 8)] * num_small_views
    # Grayscale repeated to RGB stays gray through jitter/blur: un-normalized channels agree, in [0, 1].
    for view in views:
        pixels = view * IMAGENET_STD + IMAGENET_MEAN
        assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
        torch.testing.assert_close(pixels[0], pixels[1], atol=1e-5, rtol=0)
        torch.testing.assert_close(pixels[1], pixels[2], atol=1e-5, rtol=0)


def test_tensor_input_and_single_channel_output_range():
    image = torch.randint(0, 256, (3, 12, 12), dtype=torch.uint8)
    views = multi_crop(channels=1)(image)
    assert [tuple(v.shape) for v in views] == [(1, 16, 16)] * 2 + [(1, 8, 8)] * 3
    for view in views:  # normalized with 0.5/0.5: [0, 1] -> [-1, 1]
        assert view.min() >= -1 - 1e-5 and view.max() <= 1 + 1e-5


def test_constant_image_gives_constant_views_with_geometry_blur_and_grayscale_on():
    image = Image.new("RGB", (20, 20), (128, 128, 128))
    views = multi_crop(jitter_strength=0.0, blur_prob=1.0, hflip_prob=1.0, grayscale_prob=1.0)(image)
    for view in views:
        pixels = view * IMAGENET_STD + IMAGENET_MEAN
        # uint8 grayscale may round 128 down to 127; nothing else may move the value.
        assert torch.all((pixels * 255 - 128).abs() <= 1 + 1e-3)
        assert torch.equal(view.amax(dim=(1, 2)), view.amin(dim=(1, 2)))


def test_focal_crops_cover_a_small_part_and_large_crops_the_whole_image():
    ramp = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (64, 1))  # left black, right white
    transform = multi_crop(
        large_scale=[1.0, 1.0], small_scale=[0.01, 0.02], num_small_views=5,
        jitter_strength=0.0, blur_prob=0.0, hflip_prob=0.0, channels=1, mean=[0.0], std=[1.0],
    )
    torch.manual_seed(0)
    views = transform(Image.fromarray(ramp, mode="L"))
    for large in views[:2]:
        assert large.max() - large.min() > 0.9
        assert large[0, :, 0].mean() < large[0, :, -1].mean()  # no flip: dark on the left
    for focal in views[2:]:
        # A crop of at most 2 % of the area is at most ~sqrt(0.02 * 4/3) = 16 % of the width.
        assert focal.max() - focal.min() < 0.25


def test_same_seed_same_views():
    transform = multi_crop()
    image = random_gray_image()
    torch.manual_seed(5)
    first = transform(image)
    torch.manual_seed(5)
    second = transform(image)
    third = transform(image)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, c) for a, c in zip(first, third))


@pytest.mark.parametrize("view_size, sigma, expected", [(224, 2.0, 13), (96, 2.0, 13), (8, 2.0, 7), (7, 2.0, 7), (2, 2.0, 1), (32, 0.5, 5)])
def test_blur_kernel_spans_three_sigma_and_fits_the_view(view_size, sigma, expected):
    assert blur_kernel_size(view_size, sigma) == expected


@pytest.mark.parametrize(
    "params, argument",
    [
        ({"large_size": 0}, "large_size"),
        ({"small_size": 2.5}, "small_size"),
        ({"num_small_views": -1}, "num_small_views"),
        ({"large_scale": [0.5, 0.2]}, "large_scale"),
        ({"small_scale": [0.0, 0.3]}, "small_scale"),
        ({"small_scale": 0.3}, "small_scale"),
        ({"blur_sigma": [0.0, 1.0]}, "blur_sigma"),
        ({"jitter_strength": -1}, "jitter_strength"),
        ({"blur_prob": 1.5}, "blur_prob"),
        ({"grayscale_prob": -0.1}, "grayscale_prob"),
        ({"channels": 2}, "channels"),
        ({"mean": [0.5]}, "mean"),
    ],
)
def test_bad_params_raise_value_error_naming_the_argument(params, argument):
    with pytest.raises(ValueError, match=argument):
        multi_crop(**params)
