"""MSBReg: a base loss plus MSBReg's singular-value and Brownian regularizers.

Moon, Buracas, Park, Kim, Canny, "An Embedding-Dynamic Approach to Self-supervised
Learning", arXiv:2207.03552.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import torch

from registry import build_loss, register_loss, spec_name_and_params
from ssl_ext.losses._views import check_number
from ssl_ext.losses.base import SSLLoss

DEFAULT_BASE = {"NAME": "multiview_centroid_loss", "PARAMS": {}}


@register_loss("msbreg_loss")
class MSBRegLoss(SSLLoss):
    """``base + singular_value_weight * singular_value_loss + brownian_weight * brownian_diffusive_loss``.

    With the default base (``multiview_centroid_loss``) this is MSBReg itself; any other
    registered loss can be the base (``byol_loss``, ``simclr_loss``, ``vicreg_loss``,
    ``msn_loss``...), which is how the paper's regularizers "also regularize other
    methods". The regularizers act on the same student outputs as the base loss (for
    BYOL/MSBReg: the predictor outputs). A weight of 0 skips that term entirely.

    Terms: ``loss``, ``base`` (the base loss) and the base's other terms as
    ``base_<name>``, ``singular_value``, ``brownian`` (unweighted values).

    Args:
        base: ``{NAME, PARAMS}`` of the base loss (default multiview_centroid_loss).
        singular_value_weight: lambda_s (0.004, the paper's best).
        brownian_weight: lambda_b (0.5, the paper's best).
        singular_value: PARAMS of ``singular_value_loss`` (normalize, center).
        brownian: PARAMS of ``brownian_diffusive_loss`` (noise_std, scale_by_dim, normalize).

    Without the trainer:

    >>> import torch
    >>> views = [torch.eye(2), torch.eye(2)]  # online and target views agree: the centroid term is 0
    >>> terms = MSBRegLoss(brownian_weight=0.0).forward_tensors(student=views, teacher=views)
    >>> {name: round(value.item(), 4) for name, value in terms.items()}  # 0.004 * -(1 + 1)
    {'loss': -0.008, 'base': 0.0, 'singular_value': -2.0}
    """

    def __init__(
        self,
        base: Optional[Mapping[str, Any]] = None,
        singular_value_weight: float = 0.004,
        brownian_weight: float = 0.5,
        singular_value: Optional[Mapping[str, Any]] = None,
        brownian: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__()
        self.singular_value_weight = check_number(singular_value_weight, "singular_value_weight", "msbreg_loss", minimum=0)
        self.brownian_weight = check_number(brownian_weight, "brownian_weight", "msbreg_loss", minimum=0)
        base_spec = dict(DEFAULT_BASE if base is None else base)
        if spec_name_and_params(base_spec)[0] == "msbreg_loss":
            raise ValueError("msbreg_loss: base must be another loss (byol_loss, simclr_loss, ...), not msbreg_loss")
        self.base = build_loss(base_spec)
        self.singular_value = build_loss({"NAME": "singular_value_loss", "PARAMS": dict(singular_value or {})})
        self.brownian = build_loss({"NAME": "brownian_diffusive_loss", "PARAMS": dict(brownian or {})})

    def forward(self, output, batch=None) -> Dict[str, torch.Tensor]:
        base_terms = self.base(output, batch)
        if not isinstance(base_terms, dict):
            base_terms = {"loss": base_terms}
        loss = base_terms["loss"]
        terms = {"base": base_terms["loss"]}
        terms.update({f"base_{k}": v for k, v in base_terms.items() if k != "loss"})
        if self.singular_value_weight > 0:
            terms["singular_value"] = self.singular_value(output, batch)["loss"]
            loss = loss + self.singular_value_weight * terms["singular_value"]
        if self.brownian_weight > 0:
            terms["brownian"] = self.brownian(output, batch)["loss"]
            loss = loss + self.brownian_weight * terms["brownian"]
        return {"loss": loss, **terms}

