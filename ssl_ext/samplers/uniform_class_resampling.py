"""``uniform_class_resampling``: every class is drawn with the same probability (re-balancing).

Formerly ``class_balanced``, a name that still works (with a logged note) but read as the
hidden-uniform-prior paper's "class-balanced batches", which this sampler is not (below).

Class-balanced re-sampling, the classic remedy for long-tailed supervised
learning (e.g. Kang et al., "Decoupling Representation and Classifier for
Long-Tailed Recognition", arXiv:1910.09217): each class that has images is picked
with probability ``1 / C``, whatever its size, so tail classes repeat their few
images and head classes are subsampled. Per epoch, class counts are exact up to
less than one image per class; see ``class_weighted_base`` for the algorithm
and ``ssl_ext.samplers.base`` for the rank layout and resume contract.

Not the hidden-uniform-prior paper's "class-balanced batches" (arXiv:2210.07277,
Table 1): this sampler changes the *marginal* class frequencies (uniform over
classes) and leaves which classes meet in a batch to chance. The paper's arms
keep every class's marginal frequency and control how many distinct classes a
batch holds; that is ``class_imbalanced`` with ``classes_per_batch`` = K (K = the
number of classes, or the batch size, for the paper's class-balanced arm).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from registry import register_sampler
from ssl_ext.samplers.class_weighted_base import ClassWeightedSampler


@register_sampler("uniform_class_resampling", aliases=("class_balanced",))
class UniformClassResamplingSampler(ClassWeightedSampler):
    """Uniform over the classes present in the dataset."""

    owner = "uniform_class_resampling sampler"

    def __init__(
        self, dataset: Any, batch_size: int, rank: int, world_size: int, seed: int, drop_last: bool = True,
        num_batches_per_epoch: int = 0,
    ) -> None:
        super().__init__(dataset, batch_size, rank, world_size, seed, drop_last, num_batches_per_epoch)
        self.set_class_probabilities((self.class_index.counts > 0).astype(np.float64))
