"""Config -> trunk and heads (``config.MODEL.TRUNK`` and ``config.MODEL.HEADS``).

Evaluation builds only the trunk; the train engine stacks the heads on it
(``ssl_ext.engine.builders.build_model``).
"""
from __future__ import annotations

from typing import Any, List, Sequence

from omegaconf import DictConfig
from torch import nn

import registry
from ssl_ext.utils.containers import plain


def build_trunk(cfg: DictConfig) -> nn.Module:
    """The trunk named by ``config.MODEL.TRUNK``."""
    return registry.build_trunk(plain(cfg.config.MODEL.TRUNK))


def build_heads(specs: Sequence[Any], in_dim: int) -> List[nn.Module]:
    """Heads built in order, each receiving the previous stage's ``out_dim`` as ``in_dim``."""
    heads = []
    for spec in specs:
        head = registry.build_head(plain(spec), in_dim=in_dim)
        in_dim = head.out_dim
        heads.append(head)
    return heads
