"""Config -> the train engine's model, loss and hooks.

The other builders live with what they build: data sources, views and the loader in
``ssl_ext.data.build``, trunk and heads in ``ssl_ext.models.build``, parameter groups and the
optimizer in ``ssl_ext.engine.optimizers.param_groups``.
"""
from __future__ import annotations

from typing import Any, List

from omegaconf import DictConfig, OmegaConf
from torch import nn

import registry
from ssl_ext.engine.model import SSLModel
from ssl_ext.models.build import build_heads, build_trunk
from ssl_ext.utils.containers import plain

# Default hooks and the config switch of each (None: always on). Extra hooks come from HOOKS.EXTRA.
DEFAULT_HOOKS = {
    "progress_logger": None,
    "metrics_jsonl": None,
    "tensorboard": "TENSORBOARD.ENABLED",
    "nan_guard": "NAN_GUARD",
    "model_complexity": "MODEL_COMPLEXITY.ENABLED",
    "checkpoint": None,
    "plot_curves": "PLOT_CURVES",
}
# Experiment trackers come after HOOKS.EXTRA: they close last, once every other hook has logged its
# end-of-run metrics and written its plots.
TRACKER_HOOKS = {
    "wandb_logger": "WANDB.ENABLED",
    "mlflow_logger": "MLFLOW.ENABLED",
}


def build_model(cfg: DictConfig) -> SSLModel:
    """The student: trunk, ``MODEL.HEADS`` (shared with an EMA teacher), then ``MODEL.STUDENT_ONLY_HEADS``."""
    trunk = build_trunk(cfg)
    heads = build_heads(list(cfg.config.MODEL.HEADS), trunk.out_dim)
    width = heads[-1].out_dim if heads else trunk.out_dim
    student_heads = build_heads(list(cfg.config.MODEL.get("STUDENT_ONLY_HEADS", [])), width)
    return SSLModel(trunk, heads, student_heads)


def build_loss(cfg: DictConfig) -> nn.Module:
    """The configured loss, plus ``LOSS.REGULARIZERS`` terms when listed."""
    from ssl_ext.losses.regularized import wrap_with_regularizers

    loss_cfg = cfg.config.LOSS
    base = registry.build_loss({"NAME": loss_cfg.NAME, "PARAMS": plain(loss_cfg.PARAMS)})
    return wrap_with_regularizers(base, plain(loss_cfg.get("REGULARIZERS", [])) or [])


def build_hooks(cfg: DictConfig) -> List[Any]:
    """The default hooks switched on in ``config.HOOKS``, then ``HOOKS.EXTRA``, then the experiment trackers."""
    hooks_cfg = cfg.config.HOOKS
    hooks = [
        registry.build_hook(name)
        for name, switch in DEFAULT_HOOKS.items()
        if switch is None or OmegaConf.select(hooks_cfg, switch)
    ]
    hooks += [registry.build_hook(plain(spec)) for spec in hooks_cfg.EXTRA]
    hooks += [registry.build_hook(name) for name, switch in TRACKER_HOOKS.items() if OmegaConf.select(hooks_cfg, switch)]
    return hooks
