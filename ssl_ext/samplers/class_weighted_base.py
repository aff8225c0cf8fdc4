"""Shared algorithm of the samplers that draw classes with given probabilities.

``uniform_class_resampling`` and ``power_law_class`` differ only in the class
probabilities ``q_c``. One epoch (identical on every rank, from ``(seed, epoch)``):

1. The epoch has ``L`` draws (``N`` by default, or ``num_batches_per_epoch`` global
   batches; rounded down to full global batches with ``drop_last``, else up to a
   multiple of ``world_size``). Class ``c`` gets ``L * q_c`` draws, rounded by
   systematic sampling: ``floor`` or ``ceil``, exact in expectation, exact total.
   So the per-epoch class frequencies are ``q`` up to less than one image per class.
2. Each class walks through a fresh random permutation of its images, cycling when
   it needs more than it has (small classes repeat as evenly as possible).
3. The ``L`` indices are shuffled together and split into global batches; rank ``r``
   yields its chunk of each (see ``ssl_ext.samplers.base``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ssl_ext.samplers.base import ClassIndex, ResumableSampler, check_positive_int, dataset_targets, epoch_rng, systematic_round


class ClassWeightedSampler(ResumableSampler):
    """Base class: subclasses call ``set_class_probabilities(q)`` in their ``__init__``."""

    owner = "class-weighted sampler"

    def __init__(
        self, dataset: Any, batch_size: int, rank: int, world_size: int, seed: int, drop_last: bool = True,
        num_batches_per_epoch: int = 0,
    ) -> None:
        super().__init__(dataset, batch_size, rank, world_size, seed, drop_last)
        check_positive_int(self.owner, "num_batches_per_epoch", num_batches_per_epoch, minimum=0)
        self.class_index = ClassIndex(dataset_targets(dataset), getattr(dataset, "num_classes", None))
        if num_batches_per_epoch:
            self.epoch_draws = num_batches_per_epoch * self.global_batch_size
        elif drop_last:
            self.epoch_draws = (self.dataset_size // self.global_batch_size) * self.global_batch_size
        else:
            self.epoch_draws = -(-self.dataset_size // world_size) * world_size
        if self.epoch_draws == 0:
            raise ValueError(
                f"{self.owner}: the dataset has {self.dataset_size} samples, fewer than one global batch of "
                f"{self.global_batch_size}; set num_batches_per_epoch, drop_last=false, or lower the batch size."
            )
        self.class_probabilities = np.zeros(self.class_index.num_classes)

    @property
    def present_classes(self) -> np.ndarray:
        return np.flatnonzero(self.class_index.counts > 0)

    def set_class_probabilities(self, probabilities: np.ndarray) -> None:
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if np.any(probabilities[self.class_index.counts == 0] > 0):
            raise ValueError(f"{self.owner}: a class without images got a positive sampling probability.")
        self.class_probabilities = probabilities / probabilities.sum()

    @property
    def target_class_frequencies(self) -> np.ndarray:
        """Expected share of each class (indexed by label) among the epoch's images."""
        return self.class_probabilities

    def _global_length(self) -> int:
        return self.epoch_draws

    def _global_sequence(self, epoch: int) -> np.ndarray:
        rng = epoch_rng(self.seed, epoch)
        counts = systematic_round(self.class_probabilities * self.epoch_draws, rng)
        classes = np.flatnonzero(counts)
        indices = self.class_index.draw(classes, counts[classes], rng)
        return indices[rng.permutation(indices.size)]
