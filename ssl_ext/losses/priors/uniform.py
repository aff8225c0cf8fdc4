"""The uniform cluster prior: MSN's implicit prior (its me-max term is KL(p̄ ‖ uniform)).

Assran et al., "The Hidden Uniform Cluster Prior in Self-Supervised Learning",
ICLR 2023, arXiv:2210.07277.
"""
from __future__ import annotations

import torch

from registry import register_prior
from ssl_ext.losses.priors._checks import check_num_prototypes


@register_prior("uniform")
def uniform_prior(num_prototypes: int) -> torch.Tensor:
    """π_k = 1/K for every prototype (float64)."""
    k = check_num_prototypes(num_prototypes, "uniform")
    return torch.full((k,), 1.0 / k, dtype=torch.float64)
