"""MAE and data2vec plumbing: the ViT's masking record, the MAE decoder, the teacher's block outputs,
extras reaching the loss through SSLModel/ModelOutput, and lightly 1.6.0 agreement on MAE's masking
convention, patchify and loss."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from registry import build_head, build_loss, build_trunk
from ssl_ext.engine.model import SSLModel, make_teacher
from ssl_ext.engine.output import ModelOutput
from ssl_ext.losses.mae import masked_reconstruction_loss, normalized_pixel_targets, patchify


def _vit(**params):
    base = {"preset": "custom", "img_size": 8, "patch_size": 2, "in_channels": 1, "embed_dim": 8, "depth": 2,
            "num_heads": 2}
    return build_trunk({"NAME": "vit", "PARAMS": {**base, **params}})


def test_drop_masking_reports_kept_ids_and_mask_consistently():
    torch.manual_seed(0)
    vit = _vit(patch_drop=0.75, output="tokens")
    tokens, extras = vit.forward_with_extras(torch.randn(3, 1, 8, 8), mask=True)
    kept, hidden = extras["kept_patch_ids"], extras["patch_mask"]
    assert tokens.shape == (3, 1 + 4, 8) and kept.shape == (3, 4) and hidden.shape == (3, 16)
    assert (hidden.sum(dim=1) == 12).all()
    assert not hidden.gather(1, kept).any()  # the kept ids are exactly the visible positions


def test_masking_follows_lightlys_random_token_mask_convention():
    # Both keep the patches with the lowest uniform noise, int(L * (1 - ratio)) of them (lightly pins
    # the class token first by giving it noise -1; the ViT never masks it): the same rule on the
    # same noise. Each draws its own noise, so the rule is checked on each one's draw.
    from lightly.models.utils import random_token_mask

    for ratio in (0.75, 0.6, 0.5):
        torch.manual_seed(5)
        keep_lightly, _ = random_token_mask((3, 17), mask_ratio=ratio)
        torch.manual_seed(5)
        lightly_noise = torch.rand(3, 17)[:, 1:]
        vit = _vit(patch_drop=ratio)
        torch.manual_seed(5)
        kept = vit._draw_kept_patches(3, 16, "cpu")
        torch.manual_seed(5)
        our_noise = torch.rand(3, 16)
        count = int(16 * (1 - ratio))
        assert kept.shape[1] == keep_lightly.shape[1] - 1 == count
        assert torch.equal(keep_lightly[:, 1:] - 1, lightly_noise.argsort(dim=1)[:, :count])
        assert torch.equal(kept, our_noise.argsort(dim=1)[:, :count])


def test_patchify_and_mae_loss_match_lightly():
    from lightly.models.utils import get_at_index, normalize_mean_var, patchify as lightly_patchify

    g = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
    patches = patchify(images, 4)
    assert torch.equal(patches, lightly_patchify(images, 4))
    torch.testing.assert_close(normalized_pixel_targets(patches), normalize_mean_var(patches, dim=-1))
    prediction = torch.randn(2, 4, 48, generator=g, dtype=torch.float64)
    masked_ids = torch.tensor([[0, 2, 3], [1, 2, 3]])
    mask = torch.zeros(2, 4, dtype=torch.bool).scatter(1, masked_ids, True)
    expected = F.mse_loss(get_at_index(prediction, masked_ids), get_at_index(patches, masked_ids))
    assert float(masked_reconstruction_loss(prediction, patches, mask)) == pytest.approx(float(expected), rel=1e-14)


def test_mae_decoder_puts_visible_tokens_at_their_grid_positions():
    # Reference: MAE's "unshuffle" formulation, i.e. append mask tokens to the visible ones and
    # reorder with the inverse of the (kept, hidden) permutation.
    torch.manual_seed(0)
    decoder = build_head({"NAME": "mae_decoder", "PARAMS": {"img_size": 8, "patch_size": 2, "in_channels": 1,
                                                            "decoder_dim": 8, "depth": 1, "num_heads": 2}}, in_dim=6)
    tokens = torch.randn(2, 1 + 5, 6)
    order = torch.stack([torch.randperm(16) for _ in range(2)])
    kept = order[:, :5]
    out = decoder(tokens, {"kept_patch_ids": kept})
    x = decoder.embed(tokens)
    appended = torch.cat([x[:, 1:], decoder.mask_token.expand(2, 11, 8)], dim=1)
    restore = order.argsort(dim=1)
    unshuffled = torch.gather(appended, 1, restore.unsqueeze(-1).expand(-1, -1, 8))
    y = torch.cat([x[:, :1], unshuffled], dim=1) + decoder.position
    for block in decoder.blocks:
        y = block(y)
    expected = decoder.predict(decoder.norm(y))[:, 1:].reshape(2, -1)
    torch.testing.assert_close(out, expected)


def test_mae_model_output_reaches_the_loss_with_its_mask():
    torch.manual_seed(0)
    trunk = _vit(patch_drop=0.75, output="tokens")
    head = build_head({"NAME": "mae_decoder", "PARAMS": {"img_size": 8, "patch_size": 2, "in_channels": 1,
                                                         "decoder_dim": 8, "depth": 1, "num_heads": 2}}, in_dim=8)
    model = SSLModel(trunk, [head])
    images = torch.randn(4, 1, 8, 8)
    outputs = model([images], mask=True)
    output = ModelOutput(student=outputs, student_views=[0])
    mask = output.extras["student_patch_mask"][0]
    assert mask.shape == (4, 16) and int(mask.sum()) == 4 * 12
    loss = build_loss({"NAME": "mae_loss", "PARAMS": {"patch_size": 2}})(output, {"views": [images]})["loss"]
    expected = masked_reconstruction_loss(outputs[0].reshape(4, 16, 4), normalized_pixel_targets(patchify(images, 2)),
                                          mask)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_data2vec_student_masks_with_a_token_and_the_teacher_returns_its_last_blocks():
    torch.manual_seed(0)
    trunk = _vit(patch_drop=0.5, mask_style="token", output="tokens", teacher_target_blocks=2)
    student = SSLModel(trunk, [], [build_head({"NAME": "mlp", "PARAMS": {"dims": [8], "use_bn": False}}, in_dim=8)])
    teacher = make_teacher(student)
    images = torch.randn(3, 1, 8, 8)
    predictions = student([images], mask=True)
    targets = teacher([images], mask=False, use_student_heads=False)
    assert predictions[0].shape == (3, 17, 8) and targets[0].shape == (3, 2, 16, 8)
    # The teacher's blocks are the residual stream of the unmasked tokens.
    x = trunk.tokens(images)
    blocks = []
    for block in teacher.trunk.blocks:
        x = block(x)
        blocks.append(x[:, 1:])
    torch.testing.assert_close(targets[0], torch.stack(blocks, dim=1))
    # A masked student token differs from the unmasked embedding only where the mask is.
    tokens, extras = trunk.embed_tokens(images, mask=True)
    hidden = extras["patch_mask"]
    plain = trunk.tokens(images)
    assert torch.equal(tokens[:, 1:][~hidden], plain[:, 1:][~hidden])
    expected_masked = (trunk.mask_token + trunk.pos_embed[:, 1:]).expand(3, -1, -1)[hidden]
    torch.testing.assert_close(tokens[:, 1:][hidden], expected_masked)
    output = ModelOutput(student=predictions, teacher=list(targets), student_views=[0], teacher_views=[0])
    value = build_loss({"NAME": "data2vec_loss"})(output, {})["loss"]
    value.backward()
    assert torch.isfinite(value) and trunk.mask_token.grad is not None
