"""Schedules, optimizers, parameter groups, EMA and AMP: values checked by hand."""
import math

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

import registry
from ssl_ext.config import compose_config
from ssl_ext.engine.optimizers.param_groups import param_groups
from ssl_ext.engine.model import SSLModel, ema_update, make_teacher
from ssl_ext.engine.schedules import build_schedule, lr_schedule
from ssl_ext.launch.local import launch


def test_cosine_with_linear_warmup_values():
    s = build_schedule("cosine", start=1.0, end=0.0, warmup_fraction=0.2, warmup_start=0.0)
    assert s(0.0) == pytest.approx(0.0)
    assert s(0.1) == pytest.approx(0.5)  # half-way up the ramp
    assert s(0.2) == pytest.approx(1.0)
    assert s(0.6) == pytest.approx(0.5)  # half-way down the cosine: (1 + cos(pi/2)) / 2
    assert s(0.2 + 0.8 * 0.25) == pytest.approx((1 + math.cos(math.pi * 0.25)) / 2)


@pytest.mark.parametrize(
    "name,expected",
    [("constant", [2.0, 2.0, 2.0]), ("linear", [2.0, 1.5, 1.2]), ("step", [2.0, 2.0, 0.2])],
)
def test_main_schedules(name, expected):
    s = build_schedule(name, start=2.0, end=1.0, milestones_fraction=[0.75], gamma=0.1)
    assert [s(w) for w in (0.0, 0.5, 0.8)] == pytest.approx(expected)


def test_lr_schedule_reads_epochs_from_the_config():
    opt = OmegaConf.create({"LR_SCHEDULE": {"NAME": "step", "WARMUP_EPOCHS": 0, "WARMUP_START_FACTOR": 0.0,
                                            "END_FACTOR": 0.0, "MILESTONES": [3, 6], "GAMMA": 0.5}})
    s = lr_schedule(opt, peak_lr=0.8, num_epochs=8)
    assert [s(e / 8) for e in (0, 2.9, 3, 5.9, 6, 7.9)] == pytest.approx([0.8, 0.8, 0.4, 0.4, 0.2, 0.2])


def test_lars_scales_the_step_by_the_trust_ratio_and_skips_excluded_groups():
    w = nn.Parameter(torch.tensor([3.0, 4.0]))  # ||w|| = 5
    b = nn.Parameter(torch.tensor([1.0]))
    opt = registry.build_optimizer({"NAME": "lars", "PARAMS": {"momentum": 0.0, "eta": 0.1}}, params=[
        {"params": [w], "apply_weight_decay": True, "weight_decay": 0.0},
        {"params": [b], "apply_weight_decay": False, "weight_decay": 0.0},
    ])
    for g in opt.param_groups:
        g["lr"] = 1.0
    w.grad = torch.tensor([0.0, 2.0])  # ||g|| = 2 -> trust = 0.1 * 5 / 2 = 0.25
    b.grad = torch.tensor([0.5])
    opt.step()
    assert torch.allclose(w.detach(), torch.tensor([3.0, 4.0 - 0.25 * 2.0]))
    assert torch.allclose(b.detach(), torch.tensor([0.5]))  # plain SGD step


def test_param_groups_exempt_bias_norm_and_prototypes_from_weight_decay():
    class WithPrototypes(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 4)
            self.norm = nn.BatchNorm1d(4)
            self.prototypes = nn.Parameter(torch.zeros(3, 4))

    model = WithPrototypes()
    cfg = OmegaConf.create({"WEIGHT_DECAY": 0.05, "REGULARIZE_BIAS": False, "REGULARIZE_NORM": False,
                            "REGULARIZE_PROTOTYPES": False})
    decay, no_decay = param_groups({"m": model}, cfg)
    assert decay["weight_decay"] == 0.05 and [id(p) for p in decay["params"]] == [id(model.linear.weight)]
    assert {id(p) for p in no_decay["params"]} == {
        id(model.linear.bias), id(model.norm.weight), id(model.norm.bias), id(model.prototypes)}
    cfg.REGULARIZE_PROTOTYPES = True
    decay, _ = param_groups({"m": model}, cfg)
    assert id(model.prototypes) in {id(p) for p in decay["params"]}


def test_ema_update_moves_teacher_toward_student_and_keeps_it_frozen():
    student = SSLModel(nn.Linear(2, 2), [nn.BatchNorm1d(2)])
    teacher = make_teacher(student)
    assert all(not p.requires_grad for p in teacher.parameters())
    before = teacher.trunk.weight.clone()
    with torch.no_grad():
        student.trunk.weight.add_(1.0)
    student.heads[0].running_mean.fill_(2.0)
    ema_update(teacher, student, momentum=0.75)
    assert torch.allclose(teacher.trunk.weight, 0.75 * before + 0.25 * student.trunk.weight)
    assert torch.allclose(teacher.heads[0].running_mean, torch.full((2,), 0.5))


def test_bf16_autocast_on_cpu_trains(tmp_path):
    from tests.engine._plugins import DtypeProbeHook

    DtypeProbeHook.seen.clear()
    cfg = compose_config(["config=demo/tiny_synthetic", f"config.CHECKPOINT.DIR={tmp_path}",
                          "config.MODEL.AMP.ENABLED=true", "config.MODEL.AMP.DTYPE=bfloat16",
                          "config.OPTIMIZER.MAX_ITERATIONS=3", "config.HOOKS.EXTRA=[{NAME: test_dtype_probe}]"])
    summary = launch(cfg)
    assert summary["iteration"] == 3 and math.isfinite(summary["final_loss"])
    assert len(DtypeProbeHook.seen) == 3 and all(d == torch.bfloat16 for d in DtypeProbeHook.seen)


def test_gradient_accumulation_counts_updates_not_batches(tmp_path):
    cfg = compose_config(["config=demo/tiny_synthetic", f"config.CHECKPOINT.DIR={tmp_path}",
                          "config.OPTIMIZER.ACCUMULATE_GRAD_STEPS=2", "config.OPTIMIZER.NUM_EPOCHS=1"])
    summary = launch(cfg)
    assert summary["iteration"] == (128 // 16) // 2


def test_loss_regularizers_from_yaml_add_weighted_terms(tmp_path):
    from ssl_ext.engine.builders import build_loss
    from ssl_ext.engine.output import ModelOutput

    cfg = compose_config(["config=demo/tiny_synthetic", f"config.CHECKPOINT.DIR={tmp_path}",
                          "config.LOSS.REGULARIZERS=[{NAME: singular_value_loss, WEIGHT: 0.004}]"])
    loss = build_loss(cfg)
    torch.manual_seed(0)
    views = [torch.randn(8, 16, dtype=torch.float64) for _ in range(2)]
    terms = loss(ModelOutput(student=views, student_views=[0, 1]), {})
    base = registry.build_loss({"NAME": "simclr_loss", "PARAMS": {"temperature": 0.2}})(
        ModelOutput(student=views, student_views=[0, 1]), {})["loss"]
    singular = registry.build_loss({"NAME": "singular_value_loss"})(ModelOutput(student=views, student_views=[0, 1]), {})["loss"]
    assert torch.allclose(terms["base"], base) and torch.allclose(terms["singular_value_loss"], singular)
    assert torch.allclose(terms["loss"], base + 0.004 * singular)
    summary = launch(compose_config(["config=demo/tiny_synthetic", f"config.CHECKPOINT.DIR={tmp_path}",
                                     "config.OPTIMIZER.MAX_ITERATIONS=2",
                                     "config.LOSS.REGULARIZERS=[{NAME: singular_value_loss, WEIGHT: 0.004}]"]))
    assert summary["iteration"] == 2


def test_a_loss_schedule_sets_the_attribute_every_step(tmp_path):
    from ssl_ext.engine.train_engine import build_task

    cfg = compose_config(["config=demo/tiny_synthetic", f"config.CHECKPOINT.DIR={tmp_path}",
                          "+config.LOSS_SCHEDULES.temperature={NAME: linear, START: 0.5, END: 0.1}",
                          "config.LOSS.REGULARIZERS=[{NAME: singular_value_loss, WEIGHT: 0.0}]"])
    task = build_task(cfg)
    task.iteration = task.max_iterations // 2
    task.apply_schedules()
    assert task.loss.base.temperature == pytest.approx(0.3)


def test_ema_teacher_follows_the_scheduled_momentum(tmp_path):
    from ssl_ext.data.views import collate_views
    from ssl_ext.engine.train_engine import build_task

    cfg = compose_config(["config=demo/tiny_synthetic", f"config.CHECKPOINT.DIR={tmp_path}",
                          "config.MODEL.EMA_TEACHER.ENABLED=true", "config.MODEL.EMA_TEACHER.MOMENTUM_START=0.9",
                          "config.MODEL.EMA_TEACHER.MOMENTUM_END=1.0"])
    task = build_task(cfg)
    task.run_hooks("on_start")
    batch = collate_views([task.train_loader.dataset[i] for i in range(16)])
    task.iteration = task.max_iterations // 4  # momentum 0.925 on the linear schedule
    teacher_before = {k: v.clone() for k, v in task.teacher.state_dict().items()}
    task.step(batch)
    assert task.ema_momentum == pytest.approx(0.925)
    student = task.student.state_dict()
    for name, value in task.teacher.named_parameters():
        expected = 0.925 * teacher_before[name] + 0.075 * student[name]
        assert torch.allclose(value, expected, atol=1e-7), name
