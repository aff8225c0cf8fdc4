"""Power-law cluster prior, PMSN's default for long-tailed data.

Assran et al., "The Hidden Uniform Cluster Prior in Self-Supervised Learning",
ICLR 2023, arXiv:2210.07277.
"""
from __future__ import annotations

import torch

from registry import register_prior
from ssl_ext.losses.priors._checks import check_num_prototypes


@register_prior("power_law")
def power_law_prior(num_prototypes: int, tau: float = 0.25) -> torch.Tensor:
    """π_k ∝ k^(−tau) for k = 1..K, normalized (float64, descending).

    ``tau = 0`` is the uniform prior; larger ``tau`` gives a heavier head.
    """
    k = check_num_prototypes(num_prototypes, "power_law")
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not tau >= 0:
        raise ValueError(f"prior 'power_law': tau must be a number >= 0, got {tau!r}")
    ranks = torch.arange(1, k + 1, dtype=torch.float64)
    weights = ranks.pow(-float(tau))
    return weights / weights.sum()
