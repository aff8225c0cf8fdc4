"""The ``timm`` trunk on a few real timm architectures: a CNN (ResNet-18), ConvNeXt and a ViT.

The registry-wide trunk tests (tests/models/test_trunks.py) cover the generic contract on a
tiny timm ViT; these check what is specific to wrapping timm: its pooled output, the stage and
token layers against timm's own modules, MSN patch drop inside timm's ViT, the refusals, and
training and evaluating through configs.
"""
import json

import pytest
import torch

from registry import build_trunk
from ssl_ext.benchmarks.extraction import build_frozen_trunk, layer_features
from ssl_ext.config import compose_config
from ssl_ext.launch.local import launch
from ssl_ext.models.trunks.timm_trunk import drop_patch_tokens
from ssl_ext.models.trunks.vit import kept_patch_count

TINY_VIT = {"model_name": "vit_tiny_patch16_224", "img_size": 16,
            "model_kwargs": {"patch_size": 4, "embed_dim": 16, "depth": 3, "num_heads": 2}}


def timm_trunk(seed=0, **params):
    torch.manual_seed(seed)
    return build_trunk({"NAME": "timm", "PARAMS": params}).eval()


def test_resnet18_stages_are_pooled_feature_maps_and_the_last_one_is_the_output():
    trunk = timm_trunk(model_name="resnet18")
    net = trunk.model
    assert trunk.out_dim == 512 and not trunk.supports_masking
    assert trunk.layer_names == ["stage1", "stage2", "stage3", "stage4", "stage5", "pooled"]
    assert trunk.layer_dims() == {"stage1": 64, "stage2": 64, "stage3": 128, "stage4": 256, "stage5": 512, "pooled": 512}
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        features = trunk.extract_layers(x, ["stage3", "stage5", "pooled"])
        stem = net.maxpool(net.act1(net.bn1(net.conv1(x))))
        res3 = net.layer2(net.layer1(stem))
        res5 = net.layer4(net.layer3(res3))
        torch.testing.assert_close(features["stage3"], res3.mean(dim=(2, 3)))
        torch.testing.assert_close(features["stage5"], res5.mean(dim=(2, 3)))
        torch.testing.assert_close(features["pooled"], trunk(x))
        torch.testing.assert_close(trunk(x), res5.mean(dim=(2, 3)))


def test_convnext_pooled_output_is_the_head_norm_of_the_last_stage():
    trunk = timm_trunk(model_name="convnext_atto")
    assert trunk.out_dim == 320
    assert trunk.layer_dims() == {"stage1": 40, "stage2": 80, "stage3": 160, "stage4": 320, "pooled": 320}
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        features = trunk.extract_layers(x, trunk.layer_names)
        last_map = trunk.model.forward_features(x)
        torch.testing.assert_close(features["stage4"], last_map.mean(dim=(2, 3)))
        pooled_map = last_map.mean(dim=(2, 3), keepdim=True)  # timm pools first, then LayerNorm2d on (N, C, 1, 1)
        torch.testing.assert_close(features["pooled"], trunk.model.head.norm(pooled_map).flatten(1))
    assert all(v.shape == (2, trunk.layer_dims()[k]) for k, v in features.items())


def test_vit_token_layers_match_the_vit_trunks_names_and_timms_tokens():
    trunk = timm_trunk(**TINY_VIT)
    net = trunk.model
    assert trunk.supports_masking and trunk.out_dim == 16
    assert {"cls_last1", "cls_last3", "avgpool_last2", "cls_block2", "avgpool_block1", "pooled"} <= set(trunk.layer_names)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        tokens = net.norm_pre(net._pos_embed(net.patch_embed(x)))
        per_block = []
        for block in net.blocks:
            tokens = block(tokens)
            per_block.append(net.norm(tokens))
        features = trunk.extract_layers(x, ["cls_last2", "avgpool_block1", "cls_last1", "pooled"])
    torch.testing.assert_close(features["cls_last2"], torch.cat([per_block[1][:, 0], per_block[2][:, 0]], dim=1))
    torch.testing.assert_close(features["avgpool_block1"], per_block[0][:, 1:].mean(dim=1))
    # timm's default ViT pooling is the class token after the final norm: cls_last1 is the output.
    torch.testing.assert_close(features["cls_last1"], features["pooled"])
    assert trunk.layer_dims()["cls_last2"] == 32
    # Composite layers of the benchmarks (DINO's linear-eval input) work as with the vit trunk.
    joined = layer_features(trunk, x, ["cls_last3+avgpool_last1"])["cls_last3+avgpool_last1"]
    assert joined.shape == (2, 4 * 16)


def _tokens_seen_by_first_block(trunk, x, **kwargs):
    seen = []
    handle = trunk.model.blocks[0].register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[1]))
    try:
        with torch.no_grad():
            trunk(x, **kwargs)
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize("patch_drop", [0.15, 0.5])
def test_mask_drops_patch_tokens_in_timms_vit_and_keeps_the_class_token(patch_drop):
    trunk = timm_trunk(**TINY_VIT, patch_drop=patch_drop)
    x = torch.rand(3, 3, 16, 16)  # a 4x4 grid: 16 patch tokens + 1 class token
    assert _tokens_seen_by_first_block(trunk, x) == 17
    assert _tokens_seen_by_first_block(trunk, x, mask=True) == 1 + kept_patch_count(16, patch_drop)
    # Also in train mode, and masking never leaks into the next unmasked call.
    trunk.train()
    assert _tokens_seen_by_first_block(trunk, x, mask=True) == 1 + kept_patch_count(16, patch_drop)
    assert _tokens_seen_by_first_block(trunk, x) == 17
    # Other crop sizes (MSN's focal views) are masked on their own grid: 2x2 -> 4 patches.
    assert _tokens_seen_by_first_block(trunk, torch.rand(3, 3, 8, 8), mask=True) == 1 + kept_patch_count(4, patch_drop)


def test_drop_patch_tokens_keeps_prefix_and_a_subset_of_distinct_patches():
    batch, prefix, patches, dim = 4, 2, 10, 3
    tokens = torch.arange(batch * (prefix + patches), dtype=torch.float).reshape(batch, prefix + patches, 1).expand(-1, -1, dim)
    torch.manual_seed(0)
    per_sample = drop_patch_tokens(tokens, prefix, 0.3, per_sample=True)
    assert per_sample.shape == (batch, prefix + 7, dim)
    torch.testing.assert_close(per_sample[:, :prefix], tokens[:, :prefix])
    for row, original in zip(per_sample[:, prefix:, 0], tokens[:, prefix:, 0]):
        kept = set(row.tolist())
        assert len(kept) == 7 and kept <= set(original.tolist())
    orders = {tuple((row - row.min()).tolist()) for row in per_sample[:, prefix:, 0] - tokens[:, :1, 0]}
    assert len(orders) > 1, "per-sample draws should differ between samples"
    shared = drop_patch_tokens(tokens, prefix, 0.3, per_sample=False)
    offsets = shared[:, prefix:, 0] - tokens[:, :1, 0]
    assert (offsets == offsets[0]).all(), "a batch-shared draw keeps the same positions in every sample"


def test_refuses_pretrained_weights_and_says_what_to_use():
    with pytest.raises(ValueError, match="never downloads weights.*WEIGHTS_INIT"):
        build_trunk({"NAME": "timm", "PARAMS": {"model_name": "resnet18", "pretrained": True}})


def test_unknown_model_name_suggests_close_names():
    with pytest.raises(ValueError, match=r"unknown model_name 'resnet81'.*resnet18"):
        build_trunk({"NAME": "timm", "PARAMS": {"model_name": "resnet81"}})


def test_patch_drop_on_a_cnn_and_arguments_timm_rejects_are_named():
    with pytest.raises(ValueError, match="patch_drop=0.3 needs a timm VisionTransformer.*ResNet"):
        build_trunk({"NAME": "timm", "PARAMS": {"model_name": "resnet18", "patch_drop": 0.3}})
    with pytest.raises(ValueError, match="'resnet18' rejected its arguments.*img_size"):
        build_trunk({"NAME": "timm", "PARAMS": {"model_name": "resnet18", "img_size": 32}})


def _losses(run_dir):
    with open(run_dir / "metrics.jsonl") as f:
        return [json.loads(line)["loss"] for line in f if '"loss"' in line]


TIMM_VIT_MSN = ("+config.MODEL.TRUNK.PARAMS={model_name: vit_tiny_patch16_224, in_channels: 1, img_size: 16, "
                "patch_drop: 0.15, model_kwargs: {patch_size: 4, embed_dim: 32, depth: 2, num_heads: 2}}")
NO_EXTRAS = ["config.HOOKS.MODEL_COMPLEXITY.ENABLED=false", "config.HOOKS.PLOT_CURVES=false",
             "config.HOOKS.LOG_FREQUENCY=1", "config.OPTIMIZER.MAX_ITERATIONS=3", "config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=16"]


def test_msn_trains_a_timm_vit_with_patch_drop_and_the_benchmark_loads_it(tmp_path):
    run_dir = tmp_path / "msn"
    overrides = ["config=pretrain/msn/msn_cpu_tiny", "config.MODEL.TRUNK.NAME=timm", "~config.MODEL.TRUNK.PARAMS",
                 TIMM_VIT_MSN, f"config.CHECKPOINT.DIR={run_dir}", *NO_EXTRAS]
    summary = launch(compose_config(overrides))
    assert summary["iteration"] == 3
    losses = _losses(run_dir)
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))

    # Evaluation builds the same trunk from the run's config and loads the trained weights.
    eval_cfg = compose_config([*overrides, f"config.MODEL.WEIGHTS_INIT.PARAMS_FILE={run_dir}"])
    trained = build_frozen_trunk(eval_cfg, torch.device("cpu"))
    untrained = build_frozen_trunk(compose_config(overrides), torch.device("cpu"))
    assert not torch.equal(trained.model.cls_token, untrained.model.cls_token)
    features = layer_features(trained, torch.rand(4, 1, 16, 16), ["cls_last2+avgpool_last1", "pooled"])
    assert features["cls_last2+avgpool_last1"].shape == (4, 96) and features["pooled"].shape == (4, 32)


def test_simclr_trains_a_timm_resnet18(tmp_path):
    overrides = ["config=pretrain/simclr/simclr_cpu_tiny", "config.MODEL.TRUNK.NAME=timm", "~config.MODEL.TRUNK.PARAMS",
                 "+config.MODEL.TRUNK.PARAMS={model_name: resnet18, in_channels: 1}",
                 f"config.CHECKPOINT.DIR={tmp_path}",
                 *NO_EXTRAS]
    summary = launch(compose_config(overrides))
    assert summary["iteration"] == 3
    assert all(torch.isfinite(torch.tensor(_losses(tmp_path))))
