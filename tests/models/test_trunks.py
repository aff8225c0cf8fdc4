"""Behaviour shared by every registered trunk (parametrized over the registry, timm-style)."""
import copy

import pytest
import torch
from fvcore.nn import FlopCountAnalysis

from registry import TRUNKS, build_trunk
from tiny_model_specs import FINAL_LAYER, tiny_trunk_spec

TRUNK_NAMES = TRUNKS.names()


def build_tiny(name, seed=0):
    spec, channels, sizes = tiny_trunk_spec(name)
    return _built(name, seed), channels, sizes


def _built(name, seed):
    # Initializing ResNet-18 dominates these tests: build each (name, seed) once, hand out copies.
    key = (name, seed)
    if key not in _BUILT:
        spec, _, _ = tiny_trunk_spec(name)
        torch.manual_seed(seed)
        _BUILT[key] = build_trunk(spec)
    return copy.deepcopy(_BUILT[key])


_BUILT = {}


@pytest.mark.parametrize("name", TRUNK_NAMES)
def test_pooled_output_shape_for_several_input_sizes(name):
    trunk, channels, sizes = build_tiny(name)
    trunk.eval()
    for side in sizes:
        out = trunk(torch.rand(3, channels, side, side))
        assert out.shape == (3, trunk.out_dim), f"{name} at {side}x{side}"
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", TRUNK_NAMES)
def test_extract_layers_names_shapes_and_final_layer_equals_forward(name):
    trunk, channels, sizes = build_tiny(name)
    trunk.eval()
    x = torch.rand(2, channels, sizes[0], sizes[0])
    assert FINAL_LAYER[name] in trunk.layer_names
    features = trunk.extract_layers(x, list(trunk.layer_names))
    assert list(features) == list(trunk.layer_names)
    dims = trunk.layer_dims()
    for layer, value in features.items():
        assert value.shape == (2, dims[layer]), layer
    with torch.no_grad():
        torch.testing.assert_close(features[FINAL_LAYER[name]], trunk(x))
    # A subset comes back in the order asked for.
    subset = list(dict.fromkeys([trunk.layer_names[-1], trunk.layer_names[0]]))  # one name for one-layer trunks
    assert list(trunk.extract_layers(x, subset)) == subset


@pytest.mark.parametrize("name", TRUNK_NAMES)
def test_extract_layers_rejects_unknown_name_listing_valid_ones(name):
    trunk, channels, sizes = build_tiny(name)
    with pytest.raises(ValueError, match="not_a_layer.*valid names"):
        trunk.extract_layers(torch.rand(2, channels, sizes[0], sizes[0]), ["not_a_layer"])


@pytest.mark.parametrize("name", TRUNK_NAMES)
def test_mask_keyword_is_accepted_and_only_masking_trunks_change_output(name):
    trunk, channels, sizes = build_tiny(name)
    trunk.eval()
    x = torch.rand(2, channels, sizes[0], sizes[0])
    with torch.no_grad():
        plain, again, masked = trunk(x), trunk(x, mask=False), trunk(x, mask=True)
    torch.testing.assert_close(plain, again)
    assert masked.shape == plain.shape
    if getattr(trunk, "supports_masking", False):
        assert not torch.allclose(masked, plain)
    else:
        torch.testing.assert_close(masked, plain)


@pytest.mark.parametrize("name", TRUNK_NAMES)
def test_backward_reaches_every_trainable_parameter(name):
    trunk, channels, sizes = build_tiny(name)
    trunk.train()
    x = torch.rand(4, channels, sizes[0], sizes[0], requires_grad=True)
    out = trunk(x)
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # also for parameter-free trunks (pixels)
    for param_name, param in trunk.named_parameters():
        assert param.grad is not None, param_name
        assert param.grad.abs().sum() > 0, param_name


@pytest.mark.parametrize("name", TRUNK_NAMES)
def test_same_seed_gives_same_weights_and_outputs(name):
    first, channels, sizes = build_tiny(name, seed=3)
    second, _, _ = build_tiny(name, seed=3)
    other, _, _ = build_tiny(name, seed=4)
    x = torch.rand(2, channels, sizes[0], sizes[0])
    for trunk in (first, second, other):
        trunk.eval()
    with torch.no_grad():
        torch.testing.assert_close(first(x), second(x), rtol=0, atol=0)
        if list(first.parameters()):  # a parameter-free trunk (pixels) is the same function for every seed
            assert not torch.allclose(first(x), other(x))
        torch.manual_seed(7)
        masked_a = first(x, mask=True)
        torch.manual_seed(7)
        masked_b = second(x, mask=True)
    torch.testing.assert_close(masked_a, masked_b, rtol=0, atol=0)


@pytest.mark.parametrize("name", TRUNK_NAMES)
def test_fvcore_can_trace_and_count_flops(name):
    trunk, channels, sizes = build_tiny(name)
    trunk.eval()
    flops = FlopCountAnalysis(trunk, (torch.rand(1, channels, sizes[0], sizes[0]),))
    flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    assert flops.total() > 0
