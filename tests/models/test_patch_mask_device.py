"""Patch masks come from the CPU generator whatever the trunk's device.

Regression (found for the GPU check, issue 17): masks were drawn with the device's generator, so one
seed gave different masks on CPU and GPU, and MAE, data2vec and MSN could not be compared between
them (a GPU run could not reproduce a CPU one). The ``meta`` device stands in for CUDA.
"""
import torch

from ssl_ext.models.trunks.timm_trunk import drop_patch_tokens
from ssl_ext.models.trunks.vit import VisionTransformer, draw_kept_patch_ids


def test_a_draw_for_another_device_is_the_cpu_draw():
    torch.manual_seed(0)
    on_cpu = draw_kept_patch_ids(3, 16, 12, "cpu")
    after_cpu = torch.rand(1)
    torch.manual_seed(0)
    elsewhere = draw_kept_patch_ids(3, 16, 12, "meta")
    assert elsewhere.device.type == "meta" and elsewhere.shape == on_cpu.shape == (3, 12)
    assert torch.equal(torch.rand(1), after_cpu)  # the same CPU numbers were consumed
    assert all(sorted(set(row.tolist())) == sorted(row.tolist()) for row in on_cpu)  # distinct positions


def test_masked_trunks_run_on_another_device():
    vit = VisionTransformer(preset="custom", img_size=16, patch_size=4, in_channels=1, embed_dim=8, depth=1,
                            num_heads=2, patch_drop=0.5).to("meta")
    features, extras = vit.forward_with_extras(torch.randn(2, 1, 16, 16, device="meta"), mask=True)
    assert features.device.type == "meta" and extras["patch_mask"].shape == (2, 16)
    tokens = torch.randn(2, 1 + 16, 8, device="meta")
    assert drop_patch_tokens(tokens, 1, 0.25, per_sample=True).shape == (2, 1 + 12, 8)
