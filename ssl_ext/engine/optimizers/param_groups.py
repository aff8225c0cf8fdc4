"""The weight-decay policy (which parameters are decayed) and config -> optimizer.

Biases, normalization weights and prototypes get no weight decay unless
``OPTIMIZER.REGULARIZE_BIAS`` / ``REGULARIZE_NORM`` / ``REGULARIZE_PROTOTYPES`` (as in MSN
and DINO); position embeddings and class/mask tokens never do. The registered optimizer
receives the two groups as ``params``; the schedules set ``lr`` and ``weight_decay``
of the decayed group every step.
"""
from __future__ import annotations

from typing import Any, Dict, List

import torch
from omegaconf import DictConfig
from torch import nn

import registry
from ssl_ext.utils.containers import plain

# Parameters whose name contains one of these are never decayed (ViT embeddings and tokens).
NEVER_DECAYED = ("pos_embed", "cls_token", "mask_token")


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm))


def param_groups(modules: Dict[str, nn.Module], opt_cfg: DictConfig) -> List[Dict[str, Any]]:
    """Split the trainable parameters of ``modules`` into a weight-decay and a no-weight-decay group.

    ``modules`` maps a name prefix to a module (``{"model": student, "loss": loss}``); a
    parameter shared between modules is counted once.
    """
    decay, no_decay, seen = [], [], set()
    for prefix, root in modules.items():
        for module_name, module in root.named_modules():
            for name, p in module.named_parameters(recurse=False):
                if not p.requires_grad or id(p) in seen:
                    continue
                seen.add(id(p))
                full = f"{prefix}.{module_name}.{name}".strip(".")
                exempt = (
                    (name == "bias" and not opt_cfg.REGULARIZE_BIAS)
                    or (_is_norm(module) and not opt_cfg.REGULARIZE_NORM)
                    or ("prototypes" in full and not opt_cfg.REGULARIZE_PROTOTYPES)
                    or any(k in full for k in NEVER_DECAYED)
                )
                (no_decay if exempt else decay).append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "apply_weight_decay": True, "weight_decay": float(opt_cfg.WEIGHT_DECAY)})
    if no_decay:
        groups.append({"params": no_decay, "apply_weight_decay": False, "weight_decay": 0.0})
    return groups


def build_optimizer(cfg: DictConfig, modules: Dict[str, nn.Module]) -> torch.optim.Optimizer:
    """The optimizer of ``config.OPTIMIZER`` over :func:`param_groups` of ``modules``."""
    opt_cfg = cfg.config.OPTIMIZER
    groups = param_groups(modules, opt_cfg)
    return registry.build_optimizer({"NAME": opt_cfg.NAME, "PARAMS": plain(opt_cfg.PARAMS)}, params=groups)
