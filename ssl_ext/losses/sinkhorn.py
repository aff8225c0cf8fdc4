"""Sinkhorn-Knopp balancing of soft assignments over the global batch.

Cuturi, "Sinkhorn Distances", NeurIPS 2013 (arXiv:1306.0895); used for SwAV targets
(arXiv:2006.09882) and MSN targets (arXiv:2204.07141).
"""
from __future__ import annotations

from typing import Optional

import torch

from ssl_ext.utils.distributed import all_reduce_sum, get_world_size


@torch.no_grad()
def sinkhorn_knopp(
    assignments: torch.Tensor, iterations: int = 3, prototype_marginals: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Rescale ``assignments`` (local rows ``(n, K)``, positive) toward given marginals.

    Seen as a joint ``(K, N)`` matrix over the *global* batch of ``N`` samples, each
    iteration first gives prototype ``k`` the total mass ``prototype_marginals[k]``
    (default ``1/K``; PMSN may pass its prior) and then gives each sample the mass
    ``1/N``. Prototype sums are all-reduced across ranks; sample sums are local. The
    result is returned per sample again, each row summing to 1.

    A prototype whose total mass underflows to 0 is left at 0 rather than turned into
    NaN (its row-sum is clamped to the smallest positive float).
    """
    if iterations < 0:
        raise ValueError(f"sinkhorn_knopp: iterations must be >= 0, got {iterations}")
    q = assignments.detach().T.clone()
    num_prototypes, local_n = q.shape
    global_n = local_n * get_world_size()
    if prototype_marginals is None:
        prototype_marginals = torch.full((num_prototypes,), 1.0 / num_prototypes, dtype=q.dtype, device=q.device)
    marginals = prototype_marginals.to(dtype=q.dtype, device=q.device).unsqueeze(1)
    tiny = torch.finfo(q.dtype).tiny

    q /= all_reduce_sum(q.sum())
    for _ in range(iterations):
        q /= all_reduce_sum(q.sum(dim=1, keepdim=True)).clamp_min(tiny)
        q *= marginals
        q /= q.sum(dim=0, keepdim=True) * global_n
    return (q * global_n).T
