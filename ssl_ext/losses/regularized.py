"""``LOSS.REGULARIZERS``: any loss plus weighted regularizer terms, composed from YAML.

    LOSS:
      NAME: byol_loss
      REGULARIZERS:
        - {NAME: singular_value_loss, WEIGHT: 0.004}
        - {NAME: brownian_diffusive_loss, WEIGHT: 0.5, PARAMS: {noise_std: 1.0}}

Each regularizer is a registered loss evaluated on the same ``ModelOutput``; the total is
``base + sum(WEIGHT_i * regularizer_i)``. MSBReg's singular-value and Brownian terms
(Moon et al., arXiv:2207.03552) are the intended use: they regularize BYOL, SimCLR,
VICReg or MSN without a dedicated combined loss. Not a registry plugin: the builder
wraps the configured loss when the list is non-empty.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

import torch
from torch import nn

from ssl_ext.losses.base import SSLLoss


class RegularizedLoss(SSLLoss):
    """``base`` plus ``weights[i] * regularizers[i]``; logs ``base`` and each regularizer's unweighted value."""

    def __init__(self, base: nn.Module, regularizers: Mapping[str, nn.Module], weights: Mapping[str, float]):
        super().__init__()
        for name, weight in weights.items():
            if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
                raise ValueError(f"config.LOSS.REGULARIZERS: WEIGHT of {name!r} must be a number >= 0, got {weight!r}")
        self.base = base
        self.regularizers = nn.ModuleDict(dict(regularizers))
        self.weights = dict(weights)

    def forward(self, output, batch=None) -> Dict[str, torch.Tensor]:
        terms = self.base(output, batch)
        if not isinstance(terms, dict):
            terms = {"loss": terms}
        loss = terms["loss"]
        out = {**{k: v for k, v in terms.items() if k != "loss"}, "base": terms["loss"]}
        for name, regularizer in self.regularizers.items():
            value = regularizer(output, batch)
            value = value["loss"] if isinstance(value, dict) else value
            out[name] = value
            loss = loss + self.weights[name] * value
        return {"loss": loss, **out}


def wrap_with_regularizers(base: nn.Module, specs: Sequence[Mapping[str, Any]]) -> nn.Module:
    """Build ``RegularizedLoss`` from ``[{NAME, WEIGHT, PARAMS}]`` (returns ``base`` when empty)."""
    import registry

    if not specs:
        return base
    regularizers: Dict[str, nn.Module] = {}
    weights: Dict[str, float] = {}
    for i, spec in enumerate(specs):
        spec = dict(spec)
        if "NAME" not in spec or "WEIGHT" not in spec:
            raise ValueError(f"config.LOSS.REGULARIZERS[{i}] needs NAME and WEIGHT (and optional PARAMS), got {spec}")
        name = str(spec["NAME"])
        if name in regularizers:
            raise ValueError(f"config.LOSS.REGULARIZERS lists {name!r} twice; give each regularizer once.")
        regularizers[name] = registry.build_loss({"NAME": name, "PARAMS": spec.get("PARAMS") or {}})
        weights[name] = spec["WEIGHT"]
    return RegularizedLoss(base, regularizers, weights)
