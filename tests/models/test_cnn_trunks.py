"""small_cnn and resnet specifics."""
import pytest
import torch
import torchvision
from torch import nn

from registry import build_trunk


def test_resnet_matches_torchvision_with_its_weights():
    reference = torchvision.models.resnet18(weights=None)
    reference.fc = nn.Identity()
    reference.eval()
    trunk = build_trunk({"NAME": "resnet", "PARAMS": {"depth": 18}})
    trunk.load_state_dict(reference.state_dict(), strict=True)
    trunk.eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(trunk(x), reference(x))
    assert trunk.out_dim == 512


def test_resnet50_width_and_layer_dims():
    with torch.device("meta"):  # shapes only: skip allocating and initializing the weights
        trunk = build_trunk({"NAME": "resnet", "PARAMS": {"depth": 50, "cifar_stem": True}})
        assert trunk.out_dim == 2048
        trunk.eval()
        features = trunk.extract_layers(torch.empty(1, 3, 8, 8), ["res4", "res5"])
    assert features["res4"].shape == (1, 1024) and features["res5"].shape == (1, 2048)


def test_cifar_stem_keeps_resolution_and_in_channels_is_used():
    standard = build_trunk({"NAME": "resnet", "PARAMS": {"depth": 18, "in_channels": 1}})
    cifar = build_trunk({"NAME": "resnet", "PARAMS": {"depth": 18, "in_channels": 1, "cifar_stem": True}})
    assert standard.conv1.weight.shape == (64, 1, 7, 7) and standard.conv1.stride == (2, 2)
    assert cifar.conv1.weight.shape == (64, 1, 3, 3) and cifar.conv1.stride == (1, 1)
    assert isinstance(cifar.maxpool, nn.Identity)
    # The stem output of a 32x32 image: 8x8 with the ImageNet stem, 32x32 with the CIFAR stem.
    x = torch.rand(1, 1, 32, 32)
    assert standard.maxpool(standard.relu(standard.bn1(standard.conv1(x)))).shape[-1] == 8
    assert cifar.maxpool(cifar.relu(cifar.bn1(cifar.conv1(x)))).shape[-1] == 32


def test_small_cnn_stage_widths_and_pooling_by_hand():
    trunk = build_trunk({"NAME": "small_cnn", "PARAMS": {"in_channels": 1, "widths": [3], "out_dim": 5}})
    assert trunk.layer_names == ["stage1", "stage2"] and trunk.layer_dims() == {"stage1": 3, "stage2": 5}
    trunk.eval()
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        stage1_map = trunk.stages[0](x)
        expected = trunk.stages[1](stage1_map).mean(dim=(2, 3))
        features = trunk.extract_layers(x, ["stage1", "stage2"])
    assert trunk.stages[1](stage1_map).shape[-1] == 4  # the second stage halves the resolution
    torch.testing.assert_close(features["stage1"], stage1_map.mean(dim=(2, 3)))
    torch.testing.assert_close(features["stage2"], expected)


@pytest.mark.parametrize(
    "name, params, argument",
    [
        ("small_cnn", {"widths": [8, 0]}, "widths"),
        ("small_cnn", {"widths": "8,16"}, "widths"),
        ("small_cnn", {"out_dim": -1}, "out_dim"),
        ("small_cnn", {"in_channels": 0}, "in_channels"),
        ("resnet", {"depth": 20}, "depth"),
        ("resnet", {"in_channels": 0}, "in_channels"),
        ("resnet", {"cifar_stem": "yes"}, "cifar_stem"),
        ("resnet", {"dept": 18}, "depth"),  # the registry suggests the right name
    ],
)
def test_bad_params_raise_value_error_naming_the_argument(name, params, argument):
    with pytest.raises(ValueError, match=argument):
        build_trunk({"NAME": name, "PARAMS": params})
