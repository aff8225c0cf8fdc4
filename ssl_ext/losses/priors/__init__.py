"""Cluster-size priors for PMSN: one plugin per file, registered with ``@register_prior``.

A prior is any callable (function or class) registered in ``registry.PRIORS`` that
takes ``num_prototypes`` (given by the loss) plus its own keyword arguments and
returns ``K`` probabilities sorted in descending order. ``build_checked_prior``
builds one and checks that contract, so a user's prior fails early and clearly.
"""
from __future__ import annotations

from typing import Any

import torch


def build_checked_prior(spec: Any, num_prototypes: int) -> torch.Tensor:
    """Build the prior named by ``spec`` for ``num_prototypes`` and return it as float64 ``(K,)``."""
    from registry import build_prior, spec_name_and_params

    name, _ = spec_name_and_params(spec)
    prior = torch.as_tensor(build_prior(spec, num_prototypes=num_prototypes), dtype=torch.float64).detach().cpu()
    where = f"prior {name!r}"
    if prior.shape != (num_prototypes,):
        raise ValueError(f"{where} returned shape {tuple(prior.shape)}, expected ({num_prototypes},) = (num_prototypes,)")
    if not torch.isfinite(prior).all() or (prior <= 0).any():
        raise ValueError(f"{where} must return finite, strictly positive probabilities (KL(p̄ ‖ π) needs π > 0)")
    if abs(float(prior.sum()) - 1.0) > 1e-6:
        raise ValueError(f"{where} must sum to 1, sums to {float(prior.sum())!r}")
    if (prior[1:] > prior[:-1]).any():
        raise ValueError(f"{where} must be sorted in descending order (prototype 0 is the largest cluster)")
    return prior
