"""The method configs under configs_yaml/pretrain: every one composes and validates (plugin
names and PARAMS checked against the plugins' signatures), and every ``*_cpu_tiny`` one trains
for a few real steps through the trainer with a decreasing loss."""
import json
import os
from pathlib import Path

import pytest

from ssl_ext.config import compose_config, config_root
from ssl_ext.launch.local import launch

CONFIGS_ROOT = config_root()
PRETRAIN = sorted(str(p.relative_to(CONFIGS_ROOT).with_suffix("")) for p in (CONFIGS_ROOT / "pretrain").rglob("*.yaml"))
CPU_TINY = [name for name in PRETRAIN if name.endswith("_cpu_tiny")]
METHODS = ("simclr", "msn", "pmsn", "msbreg", "vicreg", "byol")


def test_every_method_has_a_full_scale_and_a_cpu_tiny_config():
    for method in METHODS:
        names = [n for n in PRETRAIN if n.startswith(f"pretrain/{method}/")]
        assert f"pretrain/{method}/{method}_cpu_tiny" in names, method
        assert any(not n.endswith("_cpu_tiny") for n in names), method


@pytest.mark.parametrize("name", PRETRAIN)
def test_config_composes_and_validates(name):
    cfg = compose_config([f"config={name}"])
    assert cfg.config.LOSS.NAME.endswith("_loss")
    assert cfg.config.CHECKPOINT.DIR.endswith(Path(name).name)


STEPS = 8


@pytest.mark.parametrize("name", CPU_TINY)
def test_cpu_tiny_config_trains_and_lowers_the_loss(name, tmp_path):
    cfg = compose_config([
        f"config={name}", f"config.CHECKPOINT.DIR={tmp_path}", f"config.OPTIMIZER.MAX_ITERATIONS={STEPS}",
        "config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=32", "config.HOOKS.LOG_FREQUENCY=1",
        "config.HOOKS.MODEL_COMPLEXITY.ENABLED=false", "config.HOOKS.PLOT_CURVES=false",
    ])
    launch(cfg)
    with open(tmp_path / "metrics.jsonl") as f:
        values = [r["loss"] for r in map(json.loads, filter(str.strip, f)) if "loss" in r]
    assert len(values) == STEPS
    assert sum(values[-2:]) / 2 < sum(values[:2]) / 2, values
    if any(h.NAME == "prior_monitor" for h in cfg.config.HOOKS.EXTRA):
        assert os.path.exists(tmp_path / "prior_monitor.png")


@pytest.mark.parametrize("regularize", [False, True])
def test_prototypes_get_gradients_and_no_weight_decay_unless_asked(regularize):
    import torch

    from ssl_ext.engine import builders
    from ssl_ext.engine.optimizers.param_groups import param_groups
    from ssl_ext.engine.output import ModelOutput

    cfg = compose_config(["config=pretrain/pmsn/pmsn_cpu_tiny", f"config.OPTIMIZER.REGULARIZE_PROTOTYPES={regularize}"])
    loss = builders.build_loss(cfg)
    groups = param_groups({"model": builders.build_model(cfg), "loss": loss}, cfg.config.OPTIMIZER)
    (group,) = [g for g in groups if any(p is loss.prototypes for p in g["params"])]
    assert group["weight_decay"] == (cfg.config.OPTIMIZER.WEIGHT_DECAY if regularize else 0.0)
    dim = cfg.config.LOSS.PARAMS.embed_dim
    output = ModelOutput(student=[torch.randn(8, dim) for _ in range(3)], teacher=[torch.randn(8, dim)])
    loss(output, {})["loss"].backward()
    assert loss.prototypes.grad is not None and loss.prototypes.grad.abs().sum() > 0


def test_msn_cpu_tiny_escapes_the_uniform_solution(tmp_path):
    # MSN's degenerate solution predicts the uniform distribution for every view (ce = log K,
    # me-max = 0). Too-hard views on the tiny digits send it there; a learning run gets below it.
    import math

    cfg = compose_config([
        "config=pretrain/msn/msn_cpu_tiny", f"config.CHECKPOINT.DIR={tmp_path}", "config.OPTIMIZER.MAX_ITERATIONS=40",
        "config.OPTIMIZER.LR_SCHEDULE.NAME=constant",
        "config.HOOKS.LOG_FREQUENCY=1", "config.HOOKS.MODEL_COMPLEXITY.ENABLED=false", "config.HOOKS.PLOT_CURVES=false",
    ])
    launch(cfg)
    with open(tmp_path / "metrics.jsonl") as f:
        ce = [r["ce"] for r in map(json.loads, filter(str.strip, f)) if "ce" in r]
    log_k = math.log(cfg.config.LOSS.PARAMS.num_prototypes)
    assert sum(ce[-5:]) / 5 < log_k - 0.1, (log_k, ce)
