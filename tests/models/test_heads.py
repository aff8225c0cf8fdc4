"""Behaviour of every registered head, plus mlp/msn_projector specifics."""
import pytest
import torch
from torch import nn

from registry import HEADS, PluginContractError, build_head
from tiny_model_specs import tiny_head_spec

HEAD_NAMES = HEADS.names()


@pytest.mark.parametrize("name", HEAD_NAMES)
def test_head_maps_in_dim_to_out_dim(name):
    head = build_head(tiny_head_spec(name), in_dim=7)
    head.train()
    out = head(torch.rand(5, 7))
    assert out.shape == (5, head.out_dim)
    head.eval()
    assert head(torch.rand(1, 7)).shape == (1, head.out_dim)


@pytest.mark.parametrize("name", HEAD_NAMES)
def test_head_backward_reaches_every_trainable_parameter(name):
    torch.manual_seed(0)
    head = build_head(tiny_head_spec(name), in_dim=7)
    out = head(torch.rand(6, 7))
    (out * torch.randn_like(out)).sum().backward()
    for param_name, param in head.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, param_name


@pytest.mark.parametrize("name", HEAD_NAMES)
def test_head_same_seed_same_output(name):
    outputs = []
    x = torch.rand(4, 7)
    for _ in range(2):
        torch.manual_seed(11)
        head = build_head(tiny_head_spec(name), in_dim=7).eval()
        outputs.append(head(x))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)


@pytest.mark.parametrize("name", HEAD_NAMES)
def test_head_requires_in_dim_context(name):
    with pytest.raises(PluginContractError, match="in_dim"):
        build_head(tiny_head_spec(name))


def test_mlp_without_bn_is_linear_relu_linear():
    head = build_head({"NAME": "mlp", "PARAMS": {"dims": [5, 3], "use_bn": False}}, in_dim=4)
    first, second = [m for m in head.modules() if isinstance(m, nn.Linear)]
    x = torch.randn(6, 4)
    expected = torch.relu(x @ first.weight.T + first.bias) @ second.weight.T + second.bias
    torch.testing.assert_close(head(x), expected)
    assert head.out_dim == 3


def test_mlp_bn_placement():
    head = build_head({"NAME": "mlp", "PARAMS": {"dims": [5, 5, 3], "last_bn": True}}, in_dim=4)
    kinds = [type(m).__name__ for m in head.layers]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d"]
    head.train()
    out = head(torch.randn(64, 4) * 3 + 2)
    # The trailing BatchNorm (affine at its initial identity) standardizes each output in training mode.
    torch.testing.assert_close(out.mean(0), torch.zeros(3), atol=1e-5, rtol=0)


def test_msn_projector_has_msn_layout():
    head = build_head({"NAME": "msn_projector", "PARAMS": {}}, in_dim=384)
    kinds = [type(m).__name__ for m in head.layers]
    assert kinds == ["Linear", "BatchNorm1d", "GELU", "Linear", "BatchNorm1d", "GELU", "Linear"]
    widths = [(m.in_features, m.out_features) for m in head.layers if isinstance(m, nn.Linear)]
    assert widths == [(384, 2048), (2048, 2048), (2048, 256)]
    assert head.out_dim == 256
    no_bn = build_head({"NAME": "msn_projector", "PARAMS": {"hidden_dim": 8, "use_bn": False}}, in_dim=4)
    assert [type(m).__name__ for m in no_bn.layers] == ["Linear", "GELU", "Linear", "GELU", "Linear"]


@pytest.mark.parametrize(
    "name, params, argument",
    [
        ("mlp", {"dims": []}, "dims"),
        ("mlp", {"dims": [4, -2]}, "dims"),
        ("mlp", {"use_bn": "yes"}, "use_bn"),
        ("mlp", {"last_bn": 1}, "last_bn"),
        ("msn_projector", {"hidden_dim": 0}, "hidden_dim"),
        ("msn_projector", {"out_dim": 2.5}, "out_dim"),
        ("msn_projector", {"num_layers": 0}, "num_layers"),
        ("msn_projector", {"use_bn": None}, "use_bn"),
    ],
)
def test_bad_params_raise_value_error_naming_the_argument(name, params, argument):
    with pytest.raises(ValueError, match=argument):
        build_head({"NAME": name, "PARAMS": params}, in_dim=8)
