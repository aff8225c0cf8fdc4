"""ViT specifics: presets, positional-embedding interpolation, MSN patch drop, layer naming."""
import math

import pytest
import torch
import torch.nn.functional as F
from fvcore.nn import FlopCountAnalysis

from registry import build_trunk
from ssl_ext.models.trunks.vit import kept_patch_count

TINY = {"preset": "custom", "embed_dim": 16, "depth": 3, "num_heads": 2, "patch_size": 4, "img_size": 16}


def tiny_vit(**overrides):
    torch.manual_seed(0)
    vit = build_trunk({"NAME": "vit", "PARAMS": {**TINY, **overrides}})
    return vit.eval()


@pytest.mark.parametrize("preset, width, heads", [("tiny", 192, 3), ("small", 384, 6), ("base", 768, 12)])
def test_presets_have_the_standard_sizes(preset, width, heads):
    with torch.device("meta"):  # shapes only: skip allocating and initializing the big weights
        vit = build_trunk({"NAME": "vit", "PARAMS": {"preset": preset, "patch_size": 16, "img_size": 32}})
    assert (vit.out_dim, vit.depth, vit.num_heads, len(vit.blocks)) == (width, 12, heads, 12)
    assert vit.pos_embed.shape == (1, 1 + 2 * 2, width)


def test_two_crop_sizes_go_through_interpolated_positional_embeddings():
    vit = tiny_vit()
    with torch.no_grad():
        for side in (16, 8, 24):
            assert vit(torch.rand(2, 3, side, side)).shape == (2, 16)
            grid = side // 4
            assert vit.tokens(torch.rand(2, 3, side, side)).shape == (2, 1 + grid * grid, 16)
        assert vit(torch.rand(2, 3, 8, 12)).shape == (2, 16)  # non-square crops too


def test_positional_interpolation_is_identity_at_native_size_and_resizes_bicubically_elsewhere():
    vit = tiny_vit()
    assert torch.equal(vit.interpolated_pos_embed(4, 4), vit.pos_embed)
    resized = vit.interpolated_pos_embed(2, 3)
    assert resized.shape == (1, 1 + 6, 16)
    assert torch.equal(resized[:, 0], vit.pos_embed[:, 0])  # the class token's position is not a grid cell
    grid = vit.pos_embed[0, 1:].reshape(4, 4, 16).permute(2, 0, 1)[None]
    reference = F.interpolate(grid, size=(2, 3), mode="bicubic", align_corners=False)
    torch.testing.assert_close(resized[0, 1:], reference[0].permute(1, 2, 0).reshape(6, 16))
    with torch.no_grad():  # a constant embedding stays constant at any size
        vit.pos_embed[:, 1:] = 0.5
    torch.testing.assert_close(vit.interpolated_pos_embed(7, 5)[:, 1:], torch.full((1, 35, 16), 0.5))


@pytest.mark.parametrize(
    "num_patches, patch_drop, expected",
    [(16, 0.15, 13), (20, 0.15, 17), (196, 0.15, 166), (36, 0.15, 30), (16, 0.5, 8), (16, 0.0, 16), (4, 0.9, 1)],
)
def test_kept_patch_count_is_floor_of_kept_fraction_and_at_least_one(num_patches, patch_drop, expected):
    assert kept_patch_count(num_patches, patch_drop) == expected


@pytest.mark.parametrize("side, patch_drop", [(16, 0.15), (24, 0.15), (16, 0.5)])
def test_patch_drop_keeps_class_token_and_a_subset_of_patches_only_when_masked(side, patch_drop):
    vit = tiny_vit(patch_drop=patch_drop)
    x = torch.rand(3, 3, side, side)
    num_patches = (side // 4) ** 2
    with torch.no_grad():
        full = vit.tokens(x, mask=False)
        dropped = vit.tokens(x, mask=True)
    assert full.shape[1] == 1 + num_patches
    assert dropped.shape[1] == 1 + math.floor(num_patches * (1 - patch_drop) + 1e-9)
    torch.testing.assert_close(dropped[:, 0], full[:, 0])
    for sample in range(3):
        distances = torch.cdist(dropped[sample, 1:], full[sample, 1:], compute_mode="donot_use_mm_for_euclid_dist")
        matches = distances.argmin(dim=1)
        assert torch.all(distances.min(dim=1).values < 1e-6)  # every kept token is one of the originals
        assert len(set(matches.tolist())) == dropped.shape[1] - 1  # ... and none twice


def test_patch_drop_draws_per_sample_by_default_and_per_batch_when_asked():
    x = torch.rand(1, 3, 16, 16).expand(4, -1, -1, -1)  # four copies of one image
    with torch.no_grad():
        per_sample = tiny_vit().tokens(x, mask=True)
        shared = tiny_vit(patch_drop_per_sample=False).tokens(x, mask=True)
    assert not torch.allclose(per_sample[0], per_sample[1])
    for sample in range(1, 4):
        torch.testing.assert_close(shared[sample], shared[0])


def test_zero_patch_drop_ignores_mask():
    vit = tiny_vit(patch_drop=0.0)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(vit(x, mask=True), vit(x))


def test_layer_names_concatenate_last_blocks_and_match_a_manual_pass():
    vit = tiny_vit()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        tokens = vit.tokens(x)
        normed = []
        for block in vit.blocks:
            tokens = block(tokens)
            normed.append(vit.norm(tokens))
        features = vit.extract_layers(x, ["cls_last2", "avgpool_last1", "cls_block1", "avgpool_block2", "cls_last3"])
    torch.testing.assert_close(features["cls_last2"], torch.cat([normed[1][:, 0], normed[2][:, 0]], dim=1))
    torch.testing.assert_close(features["avgpool_last1"], normed[2][:, 1:].mean(dim=1))
    torch.testing.assert_close(features["cls_block1"], normed[0][:, 0])
    torch.testing.assert_close(features["avgpool_block2"], normed[1][:, 1:].mean(dim=1))
    assert features["cls_last3"].shape == (2, 48)
    assert "cls_last4" not in vit.layer_names and "cls_block3" in vit.layer_names


def test_flop_count_includes_attention_matmuls():
    vit = tiny_vit()
    flops = FlopCountAnalysis(vit, (torch.rand(1, 3, 16, 16),))
    flops.unsupported_ops_warnings(False)
    tokens, head_dim, heads = 1 + 16, 8, 2
    # q @ k^T and weights @ v per block, one multiply-add per output element and inner index.
    assert flops.by_operator()["matmul"] == 3 * 2 * heads * tokens * tokens * head_dim


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::FutureWarning")
def test_attention_under_tracing_equals_the_fused_kernel():
    vit = tiny_vit()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        traced = torch.jit.trace(vit, (x,), check_trace=False)
        torch.testing.assert_close(traced(x), vit(x), rtol=1e-5, atol=1e-5)


def test_drop_path_is_random_in_training_and_off_in_eval():
    vit = tiny_vit(drop_path_rate=0.5)
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(vit(x), vit(x))
        vit.train()
        torch.manual_seed(1)
        first = vit(x)
        second = vit(x)
    assert not torch.allclose(first, second)


def test_input_not_multiple_of_patch_size_is_a_clear_error():
    with pytest.raises(ValueError, match="patch_size 4"):
        tiny_vit()(torch.rand(1, 3, 10, 16))


@pytest.mark.parametrize(
    "params, argument",
    [
        ({"preset": "huge"}, "preset"),
        ({"preset": "small", "depth": 4}, "depth"),
        ({"preset": "custom", "depth": 2, "num_heads": 2}, "embed_dim"),
        ({**TINY, "embed_dim": 15}, "embed_dim"),
        ({**TINY, "num_heads": 0}, "num_heads"),
        ({**TINY, "patch_drop": 1.0}, "patch_drop"),
        ({**TINY, "patch_drop": -0.1}, "patch_drop"),
        ({**TINY, "img_size": 18}, "img_size"),
        ({**TINY, "patch_size": 0}, "patch_size"),
        ({**TINY, "mlp_ratio": 0}, "mlp_ratio"),
        ({**TINY, "drop_path_rate": 2.0}, "drop_path_rate"),
        ({**TINY, "qkv_bias": "no"}, "qkv_bias"),
        ({**TINY, "patchdrop": 0.1}, "patch_drop"),
    ],
)
def test_bad_params_raise_value_error_naming_the_argument(params, argument):
    with pytest.raises(ValueError, match=argument):
        build_trunk({"NAME": "vit", "PARAMS": params})
