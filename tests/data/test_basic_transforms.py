"""two_view and eval_resize: shapes, channels, normalization, determinism."""
import numpy as np
import pytest
import torch
from PIL import Image

from registry import build_transform


def gray_image(size=8):
    return Image.fromarray((np.arange(size * size).reshape(size, size) * 3 % 256).astype(np.uint8))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_two_view_shapes_and_channels(channels, as_tensor):
    transform = build_transform({"NAME": "two_view", "PARAMS": {"size": 32, "channels": channels}})
    image = gray_image()
    if as_tensor:
        image = torch.from_numpy(np.array(image)).unsqueeze(0)
    views = transform(image)
    assert len(views) == 2
    for view in views:
        assert type(view) is torch.Tensor and view.dtype == torch.float32 and view.shape == (channels, 32, 32)


def test_two_view_views_differ_and_follow_torch_seed():
    transform = build_transform({"NAME": "two_view", "PARAMS": {"size": 16, "num_views": 3}})
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 20, 3), dtype=np.uint8))
    torch.manual_seed(3)
    first = transform(image)
    torch.manual_seed(3)
    second = transform(image)
    assert len(first) == 3
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    assert not torch.equal(first[0], first[1])


def test_two_view_without_augmentation_is_plain_normalized_resize():
    transform = build_transform(
        {
            "NAME": "two_view",
            "PARAMS": {"size": 8, "min_scale": 1.0, "hflip_prob": 0.0, "jitter_prob": 0.0, "grayscale_prob": 0.0,
                       "channels": 1, "mean": [0.0], "std": [1.0]},
        }
    )
    image = gray_image(8)
    # A full-area crop of a square image with ratio 1 is the image itself; pixel / 255 after ToDtype.
    expected = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).unsqueeze(0)
    view = transform(image)[0]
    torch.testing.assert_close(view, expected, atol=1e-6, rtol=0)


def test_eval_resize_is_deterministic_and_normalizes():
    transform = build_transform({"NAME": "eval_resize", "PARAMS": {"size": 4, "resize": 8, "mean": [0.5] * 3, "std": [0.5] * 3}})
    image = Image.fromarray(np.full((8, 8), 255, dtype=np.uint8))
    views = transform(image)
    assert len(views) == 1 and views[0].shape == (3, 4, 4)
    torch.testing.assert_close(views[0], torch.ones(3, 4, 4))  # (1 - 0.5) / 0.5
    # center crop of the 8x8 arange image: rows/cols 2..5
    crop = build_transform({"NAME": "eval_resize", "PARAMS": {"size": 4, "resize": 8, "channels": 1, "mean": [0.0], "std": [1.0]}})
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8)
    out = crop(Image.fromarray(pixels))[0][0]
    torch.testing.assert_close(out, torch.from_numpy(pixels[2:6, 2:6].astype(np.float32) / 255.0))


@pytest.mark.parametrize(
    "name,bad",
    [("two_view", {"size": 0}), ("two_view", {"min_scale": 0.0}), ("two_view", {"channels": 2}),
     ("two_view", {"jitter_prob": 2.0}), ("two_view", {"mean": [0.5]}), ("eval_resize", {"resize": 2, "size": 4})],
)
def test_transforms_reject_bad_params(name, bad):
    with pytest.raises(ValueError):
        build_transform({"NAME": name, "PARAMS": bad})
