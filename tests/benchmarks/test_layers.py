"""Layer choice per trunk: ViT class token / average-pooled patches of the last N blocks, ResNet res4/res5."""
import pytest
import torch
from omegaconf import OmegaConf

import registry
from ssl_ext.benchmarks.extraction import evaluation_layers, layer_features


def layers_cfg(layers):
    return OmegaConf.create({"config": {"BENCHMARK": {"FEATURES": {"LAYERS": layers}}}})


def test_vit_class_tokens_and_pooled_patches_concatenate():
    torch.manual_seed(0)
    vit = registry.build_trunk({"NAME": "vit", "PARAMS": {
        "preset": "custom", "img_size": 16, "patch_size": 8, "embed_dim": 16, "depth": 3, "num_heads": 2}}).eval()
    images = torch.randn(5, 3, 16, 16)
    layers = evaluation_layers(layers_cfg(["cls_last2+avgpool_last1", "cls_last1"]), vit)
    with torch.no_grad():
        features = layer_features(vit, images, layers)
        parts = vit.extract_layers(images, ["cls_last2", "avgpool_last1"])
        assert features["cls_last2+avgpool_last1"].shape == (5, 2 * 16 + 16)
        assert torch.equal(features["cls_last2+avgpool_last1"], torch.cat([parts["cls_last2"], parts["avgpool_last1"]], 1))
        assert torch.allclose(features["cls_last1"], vit(images), atol=1e-6)  # the last class token is the output
    assert evaluation_layers(layers_cfg([]), vit) == [vit.layer_names[-1]]


def test_resnet_res4_res5_and_unknown_names():
    resnet = registry.build_trunk({"NAME": "resnet", "PARAMS": {"depth": 18, "cifar_stem": True}}).eval()
    with torch.no_grad():
        features = layer_features(resnet, torch.randn(2, 3, 16, 16), ["res4", "res5"])
    assert features["res4"].shape == (2, 256) and features["res5"].shape == (2, 512)
    assert evaluation_layers(layers_cfg([]), resnet) == ["res5"]
    with pytest.raises(ValueError, match=r"unknown layer\(s\) \['res6'\].*valid: \['conv1', 'res2'"):
        evaluation_layers(layers_cfg(["res5+res6"]), resnet)
