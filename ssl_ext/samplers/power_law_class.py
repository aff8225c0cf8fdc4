"""``power_law_class``: class probabilities proportional to rank^(-alpha).

Makes a balanced dataset look long-tailed at the batch level without discarding
data (the batch-level counterpart of CIFAR-LT subsampling, Cui et al.,
arXiv:1901.05555; the power law mirrors the long-tailed prior of PMSN, Assran et
al., arXiv:2210.07277): the class of rank ``k`` (1 = head) is drawn with
probability ``k^(-alpha) / sum_j j^(-alpha)``. ``alpha = 0`` is class-balanced.

``rank_by`` chooses the class ranking (the papers leave it open):
``frequency`` (default) ranks by dataset size, largest first, ties by label, so
on a balanced dataset it is label order and on a long-tailed one the head stays
the head; ``index`` uses label order; ``random`` uses a permutation drawn once from
``seed`` (fixed across epochs). See ``class_weighted_base`` for the per-epoch
algorithm and ``ssl_ext.samplers.base`` for the rank layout and resume contract.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from registry import register_sampler
from ssl_ext.samplers.base import check_choice
from ssl_ext.samplers.class_weighted_base import ClassWeightedSampler

RANKINGS = ("frequency", "index", "random")


@register_sampler("power_law_class")
class PowerLawClassSampler(ClassWeightedSampler):
    """Class ``k``-th in ``rank_by`` order is drawn with probability proportional to ``k^(-alpha)``."""

    owner = "power_law_class sampler"

    def __init__(
        self, dataset: Any, batch_size: int, rank: int, world_size: int, seed: int, drop_last: bool = True,
        alpha: float = 1.0, rank_by: str = "frequency", num_batches_per_epoch: int = 0,
    ) -> None:
        super().__init__(dataset, batch_size, rank, world_size, seed, drop_last, num_batches_per_epoch)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha < 0:
            raise ValueError(f"{self.owner}: alpha must be a float >= 0, got {alpha!r}.")
        check_choice(self.owner, "rank_by", rank_by, RANKINGS)
        self.alpha, self.rank_by = float(alpha), rank_by
        present = self.present_classes
        if rank_by == "frequency":
            ordered = present[np.argsort(-self.class_index.counts[present], kind="stable")]
        elif rank_by == "index":
            ordered = present
        else:
            ordered = np.random.default_rng([seed & 0xFFFFFFFF, 0x5EED]).permutation(present)
        self.class_ranking = ordered
        probabilities = np.zeros(self.class_index.num_classes)
        probabilities[ordered] = np.arange(1, ordered.size + 1, dtype=np.float64) ** -self.alpha
        self.set_class_probabilities(probabilities)
