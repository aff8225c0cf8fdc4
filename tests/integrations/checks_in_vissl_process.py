"""Checks of ssl_ext.integrations.vissl that need VISSL imported but no training run.

Not collected by the suite's pytest (its name does not start with ``test_``): test_vissl.py
runs it with a second pytest in a subprocess whose PYTHONPATH starts with the isolated VISSL
install, because VISSL's bundled classy_vision must not enter the suite's own process.
"""
import pytest
import torch

from ssl_ext.integrations.vissl import SSLExtLoss, infer_view_layout, ssl_ext_hooks
from ssl_ext.losses.simclr import nt_xent
from vissl.config import AttrDict


def test_view_major_stack_of_vissls_simclr_collator():
    layout = infer_view_layout(torch.zeros(6, 3), [torch.tensor([5, 7, 9, 5, 7, 9])])
    assert layout.order == "view-major" and [r.tolist() for r in layout.rows] == [[0, 1, 2], [3, 4, 5]]


def test_image_major_stack_is_recognised_and_paired_by_image():
    layout = infer_view_layout(torch.zeros(6, 3), torch.tensor([5, 5, 7, 7, 9, 9]))
    assert layout.order == "image-major" and [r.tolist() for r in layout.rows] == [[0, 2, 4], [1, 3, 5]]


def test_one_tensor_per_crop_of_different_resolutions():
    crops = [torch.zeros(2, 3, 32, 32), torch.zeros(2, 3, 32, 32), torch.zeros(2, 3, 16, 16)]
    layout = infer_view_layout(crops, [torch.tensor([4, 8, 4, 8, 4, 8])])
    assert layout.per_crop_inputs and layout.num_views == 3
    assert [x.shape[-1] for x in layout.inputs_of(crops, [2, 0])] == [16, 32]


def test_crops_holding_different_images_are_refused():
    crops = [torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8)]
    with pytest.raises(ValueError, match="same images in the same order"):
        infer_view_layout(crops, torch.tensor([4, 8, 8, 4]))


def test_repeated_image_needs_num_views_and_then_works():
    data_idx = torch.tensor([1, 1, 2, 1, 1, 2])  # image 1 drawn twice, two views, view-major
    with pytest.raises(ValueError, match="NUM_VIEWS"):
        infer_view_layout(torch.zeros(6, 3), data_idx)
    assert infer_view_layout(torch.zeros(6, 3), data_idx, num_views=2).order == "view-major"


def test_wrapped_loss_pairs_image_major_rows_like_nt_xent_on_the_views():
    torch.manual_seed(0)
    loss = SSLExtLoss.from_config({"name": "ssl_ext_loss", "NAME": "simclr_loss", "PARAMS": {"temperature": 0.5}})
    view_a, view_b = torch.randn(4, 8, dtype=torch.float64), torch.randn(4, 8, dtype=torch.float64)
    interleaved = torch.stack([view_a, view_b], dim=1).reshape(8, 8)  # image-major: a0 b0 a1 b1 ...
    loss.prepare_batch({"input": torch.zeros(8, 3), "data_idx": [torch.arange(4).repeat_interleave(2)]})
    value = loss(interleaved, torch.zeros(8))
    assert value.item() == pytest.approx(nt_xent(view_a, view_b, 0.5).item(), rel=1e-12)
    assert loss.last_terms == {"loss": pytest.approx(value.item())}


def test_loss_without_the_launchers_hooks_says_how_to_launch():
    loss = SSLExtLoss.from_config({"NAME": "simclr_loss"})
    with pytest.raises(RuntimeError, match="ssl_ext.integrations.vissl.run_distributed_engines"):
        loss(torch.zeros(4, 8), torch.zeros(4))


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match=r"unknown keys \['TEMPERATURE'\]"):
        SSLExtLoss.from_config({"NAME": "simclr_loss", "TEMPERATURE": 0.1})
    with pytest.raises(ValueError, match="NAME is missing"):
        SSLExtLoss.from_config({"PARAMS": {}})
    with pytest.raises(ValueError, match="STUDENT_VIEWS"):
        SSLExtLoss.from_config({"NAME": "simclr_loss", "STUDENT_VIEWS": ["0"]})
    cfg = AttrDict({"LOSS": {"name": "ssl_ext_loss", "ssl_ext_loss": {"NAME": "pmsn_loss"}},
                    "TRAINER": {"TASK_NAME": "self_supervision_task"}})
    with pytest.raises(ValueError, match="TASK_NAME=ssl_ext_task"):
        ssl_ext_hooks(cfg)


def test_teacher_leaves_out_student_only_heads():
    """BYOL-style: the teacher is trunk + projector; the student's predictor (last head) is student-only."""
    from vissl.models import build_model
    from vissl.utils.hydra_config import compose_hydra_configuration, convert_to_attrdict

    from ssl_ext.integrations.vissl.task import make_vissl_teacher

    vit = "config.MODEL.TRUNK.VISION_TRANSFORMERS"
    _, cfg = convert_to_attrdict(compose_hydra_configuration([
        "config=test/integration_test/quick_simclr", "config.MODEL.TRUNK.NAME=vision_transformer",
        f"{vit}.IMAGE_SIZE=32", f"{vit}.PATCH_SIZE=8", f"{vit}.NUM_LAYERS=1", f"{vit}.NUM_HEADS=2",
        f"{vit}.HIDDEN_DIM=32", f"{vit}.MLP_DIM=64",
        "config.MODEL.HEAD.PARAMS=[[mlp,{dims:[32,16]}],[mlp,{dims:[16,16]}]]",
    ]), dump_config=False)
    student = build_model(cfg.MODEL, cfg.OPTIMIZER).eval()
    teacher = make_vissl_teacher(student, student_only_heads=1).eval()
    assert len(teacher.heads) == 1 and not any(p.requires_grad for p in teacher.parameters())
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        (teacher_out,) = teacher(images)  # a copy of trunk + projector
        (student_out,) = student(images)  # trunk + projector + predictor
    torch.testing.assert_close(student.heads[1](teacher_out), student_out)
    with pytest.raises(ValueError, match="STUDENT_ONLY_HEADS=2"):
        make_vissl_teacher(student, student_only_heads=2)


def test_ssl_ext_trunk_masks_the_student_only():
    """MSN in VISSL: the student's ssl_ext ViT drops patches in training; the EMA teacher's copy does not."""
    from ssl_ext.integrations.vissl.task import make_vissl_teacher
    from ssl_ext.integrations.vissl.trunk import SSLExtTrunk

    spec = {"NAME": "vit", "PARAMS": {"preset": "custom", "patch_size": 8, "img_size": 32, "embed_dim": 16, "depth": 1, "num_heads": 2,
                                      "patch_drop": 0.5}, "MASK_STUDENT": True}
    student = SSLExtTrunk(AttrDict({"TRUNK": {"NAME": "ssl_ext_trunk", "SSL_EXT_TRUNK": spec}})).train()
    holder = torch.nn.Module()
    holder.trunk, holder.heads = student, torch.nn.ModuleList([torch.nn.Identity()])
    teacher = make_vissl_teacher(holder).trunk.train()
    images = torch.randn(4, 3, 32, 16)  # a focal-size crop: positional embeddings are interpolated
    torch.manual_seed(1)
    (masked,) = student(images)
    (whole,) = teacher(images)
    torch.testing.assert_close(whole, student.trunk(images, mask=False))
    assert masked.shape == whole.shape == (4, 16) and not torch.allclose(masked, whole)
    with pytest.raises(ValueError, match="does not support masking"):
        SSLExtTrunk(AttrDict({"TRUNK": {"SSL_EXT_TRUNK": {"NAME": "pixels", "MASK_STUDENT": True}}}))
    with pytest.raises(ValueError, match="NAME is missing"):
        SSLExtTrunk(AttrDict({"TRUNK": {"SSL_EXT_TRUNK": {}}}))


def test_losses_needing_more_than_head_outputs_say_so():
    """MAE needs the trunk's patch mask and the pixels, which VISSL's model does not hand to a loss."""
    loss = SSLExtLoss.from_config({"NAME": "mae_loss", "PARAMS": {"patch_size": 8}})
    loss.prepare_batch({"input": torch.zeros(4, 3), "data_idx": torch.tensor([0, 1, 0, 1])})
    with pytest.raises(ValueError, match="(?s)patch mask.*mae_loss and data2vec_loss, run with ssl_ext's own trainer"):
        loss(torch.zeros(4, 8), torch.zeros(4))


# Every registered loss through the adapter, as VISSL calls it: 4 crops (2 large, 2 focal) of 4 images,
# 16-dim head outputs, teacher outputs as EMATeacherHook leaves them. A new loss that needs other
# settings gets an entry here (PARAMS, then the view keys of config.LOSS.ssl_ext_loss).
PROTOTYPES = {"num_prototypes": 8, "embed_dim": 16}
VISSL_SETTINGS = {
    "simclr_loss": ({}, {"STUDENT_VIEWS": [0, 1]}),
    "vicreg_loss": ({}, {"STUDENT_VIEWS": [0, 1]}),
    "byol_loss": ({}, {"STUDENT_VIEWS": [0, 1], "TEACHER_VIEWS": [0, 1]}),
    "msn_loss": (PROTOTYPES, {"STUDENT_VIEWS": [1, 2, 3], "TEACHER_VIEWS": [0]}),
    "pmsn_loss": (PROTOTYPES, {"STUDENT_VIEWS": [1, 2, 3], "TEACHER_VIEWS": [0]}),
    "swav_loss": (PROTOTYPES, {}),
    "pswav_loss": (PROTOTYPES, {}),
    "dino_loss": ({"out_dim": 16}, {"TEACHER_VIEWS": [0, 1]}),
    "pdino_loss": ({"out_dim": 16}, {"TEACHER_VIEWS": [0, 1]}),
}
NEEDS_MORE_THAN_HEAD_OUTPUTS = {"mae_loss", "data2vec_loss"}


def _registered_losses():
    from registry import LOSSES

    return sorted(LOSSES.names())


@pytest.mark.parametrize("name", _registered_losses())
def test_every_registered_loss_through_the_adapter(name):
    params, views = VISSL_SETTINGS.get(name, ({}, {}))
    loss = SSLExtLoss.from_config({"NAME": name, "PARAMS": params, **views, "EMA_TEACHER": {"ENABLED": True}})
    n = 4
    crops = [torch.zeros(n, 3, 32, 32)] * 2 + [torch.zeros(n, 3, 16, 16)] * 2
    layout = loss.prepare_batch({"input": crops, "data_idx": [torch.arange(n).repeat(4)], "target": torch.zeros(4 * n)})
    torch.manual_seed(0)
    teacher_ids = loss.resolved_views(loss.teacher_view_ids, "TEACHER_VIEWS", layout)
    loss.teacher_outputs = [torch.randn(n, 16) for _ in teacher_ids]
    head_output = torch.randn(4 * n, 16, requires_grad=True)
    if name in NEEDS_MORE_THAN_HEAD_OUTPUTS:
        with pytest.raises(ValueError, match="run with ssl_ext's own trainer"):
            loss(head_output, torch.zeros(4 * n))
        return
    value = loss(head_output, torch.zeros(4 * n))
    assert value.dim() == 0 and torch.isfinite(value)
    assert loss.last_terms["loss"] == pytest.approx(value.item())
    value.backward()
    student_ids = loss.resolved_views(loss.student_view_ids, "STUDENT_VIEWS", layout)
    grads = head_output.grad.view(4, n, 16).abs().sum(dim=(1, 2))
    assert all(grads[v] > 0 for v in student_ids), f"no gradient reaches student views {student_ids}: {grads}"
