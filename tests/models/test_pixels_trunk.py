"""The raw-pixel floor trunk: exact values and errors (its engine runs: tests/benchmarks/test_floors.py)."""
import pytest
import torch

import registry


def test_pixels_at_native_size_are_the_flattened_image_and_resized_ones_are_area_averages():
    trunk = registry.build_trunk({"NAME": "pixels", "PARAMS": {"in_channels": 1, "image_size": 2}})
    assert trunk.out_dim == 4 and not list(trunk.parameters())
    x = torch.arange(4.0).view(1, 1, 2, 2)
    torch.testing.assert_close(trunk(x), torch.tensor([[0.0, 1.0, 2.0, 3.0]]))
    # 4x4 -> 2x2 with antialiasing averages each 2x2 block (hand-computable).
    big = torch.arange(16.0).view(1, 1, 4, 4)
    torch.testing.assert_close(trunk(big), torch.tensor([[2.5, 4.5, 10.5, 12.5]]))


def test_pixels_rejects_wrong_channels_naming_the_key():
    trunk = registry.build_trunk({"NAME": "pixels", "PARAMS": {"in_channels": 3, "image_size": 4}})
    with pytest.raises(ValueError, match="in_channels"):
        trunk(torch.rand(2, 1, 4, 4))
    with pytest.raises(ValueError, match="image_size"):
        registry.build_trunk({"NAME": "pixels", "PARAMS": {"image_size": 0}})
