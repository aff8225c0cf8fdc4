"""Prior-matching SwAV: SwAV whose Sinkhorn equipartition is replaced by any cluster prior.

SwAV (Caron et al., arXiv:2006.09882) balances its codes so that every prototype
receives the same mass 1/K: a hidden *uniform* cluster prior (Assran et al., "The
Hidden Uniform Cluster Prior in Self-Supervised Learning", ICLR 2023,
arXiv:2210.07277). Here prototype k receives mass π_k of a registered prior instead.
"""
from __future__ import annotations

from typing import Any, List, Mapping, Optional

import torch

from registry import register_loss
from ssl_ext.losses.priors import build_checked_prior
from ssl_ext.losses.swav import SwAVLoss

DEFAULT_PRIOR = {"NAME": "power_law", "PARAMS": {"tau": 0.25}}


@register_loss("pswav_loss")
class PriorSwAVLoss(SwAVLoss):
    """``swav_loss`` with Sinkhorn marginals π from the ``priors`` registry.

    The codes are ``Sinkhorn(exp(scores/ε))`` with row sums π_k (prototype k, π sorted
    descending) instead of 1/K; everything else is SwAV's. SwAV has no separate
    regularizer: its equipartition constraint *is* its prior, so this is the one place
    the prior enters. With the ``uniform`` prior the loss equals ``swav_loss`` to
    floating-point precision.

    Args: those of ``swav_loss``, plus
        prior: ``{NAME, PARAMS}`` of a registered prior (default power_law, tau 0.25).
    """

    loss_name = "pswav_loss"

    def __init__(
        self,
        num_prototypes: int = 3000,
        embed_dim: int = 128,
        temperature: float = 0.1,
        epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
        code_views: List[int] = (0, 1),
        queue_length: int = 0,
        queue_start_step: int = 0,
        freeze_prototypes_steps: int = 0,
        prior: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__(
            num_prototypes, embed_dim, temperature, epsilon, sinkhorn_iterations, code_views, queue_length,
            queue_start_step, freeze_prototypes_steps,
        )
        self.prior_spec = dict(DEFAULT_PRIOR if prior is None else prior)
        self.register_buffer("prior", build_checked_prior(self.prior_spec, self.num_prototypes), persistent=False)

    def sinkhorn_marginals(self) -> Optional[torch.Tensor]:
        return self.prior
