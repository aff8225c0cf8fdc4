"""``class_imbalanced``: every global batch holds exactly K classes, each class keeps its marginal.

The diagnostic sampler of the long-tailed SSL study (DESIGN.md; cf. "class-
imbalanced" K = 8 vs "class-balanced" K = 960 batches of 4,096 for SimCLR,
arXiv:2002.05709): volume-maximizing SSL losses suffer when a batch covers few
classes, even when every class is seen as often as usual over an epoch.

Algorithm (one epoch, identical on every rank, from ``(seed, epoch)``)
---------------------------------------------------------------------
Let ``G = batch_size * world_size`` (global batch), ``K = classes_per_batch``,
``m = G / K`` images per class and batch, ``nb`` global batches per epoch
(default ``N // G``), so the epoch has ``S = nb * K`` *slots* (one slot = m images
of one class in one batch).

1. **Slots per class keep the marginal.** Class ``c`` (``n_c`` of the ``N`` images)
   should receive a share ``p_c = n_c / N`` of the epoch's images, i.e.
   ``t_c = S * p_c`` slots. ``t_c`` is rounded to an integer ``s_c`` by systematic
   sampling over a random class order: ``s_c`` is ``floor(t_c)`` or ``ceil(t_c)``,
   ``E[s_c] = t_c`` exactly and ``sum(s_c) = S`` exactly. So every class's expected
   image count per epoch is ``nb * G * p_c`` (its natural frequency), and within one
   epoch it is off by less than one slot (``m`` images). A class that would need more
   than one slot per batch (``p_c > 1/K``) cannot keep its marginal; it is capped at
   ``nb`` slots and the excess is spread over the other classes in proportion to
   their frequency (a warning says so).
2. **Slots to batches with distinct classes.** Slots are listed class by class in a
   random class order (class ``c`` repeated ``s_c`` times, ``s_c <= nb``), and slot
   ``j`` goes to batch ``j mod nb``. A class's slots are consecutive and fewer than
   ``nb``, so no batch gets a class twice: every batch holds exactly K distinct
   classes. The batch order is then shuffled. Vectorized, no per-sample loop.
3. **Images per slot.** Each class walks through a fresh random permutation of its
   images, ``m`` per slot, so images are not repeated within an epoch while the class
   has enough. When a class has fewer images than its slots need (in particular
   ``n_c < m``: B/K larger than the class), ``small_class_policy`` decides:
   ``replacement`` (default) keeps walking around the permutation again, so images
   repeat as evenly as possible; ``exclude`` drops such classes (``n_c < m``) from the
   sampler and renormalizes the marginals over the rest; ``error`` refuses. (VISSL's
   StratifiedClassSampler crashes on such classes and also requires K to divide the
   number of classes; neither restriction exists here, e.g. K = 8 with iNat18's
   8,142 classes works.)

K = G recovers the most balanced batches (one image per class, G distinct classes).

Distributed layout
------------------
Global batch ``i`` is split into ``world_size`` chunks of ``batch_size``; rank ``r``
yields chunk ``r`` as its ``i``-th batch. ``rank_classes="shared"`` (default) deals the
class-major batch round-robin over ranks, so every rank holds images of all K
classes (exactly ``m / world_size`` each when that divides) and ranks hold disjoint
images. ``rank_classes="distinct"`` gives each rank ``K / world_size`` whole classes
(needs ``world_size`` to divide K). Inside a rank's chunk the order is shuffled.

``drop_last`` is accepted for the common sampler signature; batches are always full.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from registry import register_sampler
from ssl_ext.samplers.base import (
    ClassIndex, ResumableSampler, check_choice, check_positive_int, dataset_targets, epoch_rng, systematic_round,
)

SMALL_CLASS_POLICIES = ("replacement", "exclude", "error")
RANK_CLASS_MODES = ("shared", "distinct")


def capped_slot_targets(probabilities: np.ndarray, total_slots: int, cap: int) -> np.ndarray:
    """``total_slots * p`` with no entry above ``cap``; the excess goes to the others pro rata (water-filling)."""
    targets = probabilities * total_slots
    capped = np.zeros(targets.size, dtype=bool)
    while True:
        over = (targets > cap + 1e-9) & ~capped
        if not over.any():
            return np.minimum(targets, cap)
        capped |= over
        free = ~capped
        remaining = total_slots - cap * capped.sum()
        targets = np.where(capped, float(cap), probabilities * remaining / probabilities[free].sum())


@register_sampler("class_imbalanced")
class ClassImbalancedSampler(ResumableSampler):
    """Exactly ``classes_per_batch`` classes per global batch with natural class marginals; see the module docstring."""

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        rank: int,
        world_size: int,
        seed: int,
        drop_last: bool = True,
        classes_per_batch: int = 8,
        small_class_policy: str = "replacement",
        rank_classes: str = "shared",
        num_batches_per_epoch: int = 0,
    ) -> None:
        super().__init__(dataset, batch_size, rank, world_size, seed, drop_last)
        owner = "class_imbalanced sampler"
        check_positive_int(owner, "classes_per_batch", classes_per_batch)
        check_choice(owner, "small_class_policy", small_class_policy, SMALL_CLASS_POLICIES)
        check_choice(owner, "rank_classes", rank_classes, RANK_CLASS_MODES)
        check_positive_int(owner, "num_batches_per_epoch", num_batches_per_epoch, minimum=0)
        global_batch = self.global_batch_size
        if global_batch % classes_per_batch:
            raise ValueError(
                f"{owner}: the global batch ({batch_size} per replica x {world_size} ranks = {global_batch}) must be a "
                f"multiple of classes_per_batch={classes_per_batch} so every class gets the same number of images."
            )
        if rank_classes == "distinct" and classes_per_batch % world_size:
            raise ValueError(
                f"{owner}: rank_classes='distinct' gives each rank classes_per_batch / world_size classes, but "
                f"classes_per_batch={classes_per_batch} is not a multiple of world_size={world_size}."
            )
        self.classes_per_batch = classes_per_batch
        self.images_per_class = global_batch // classes_per_batch
        self.small_class_policy = small_class_policy
        self.rank_classes = rank_classes

        targets = dataset_targets(dataset)
        self.class_index = ClassIndex(targets, getattr(dataset, "num_classes", None))
        counts = self.class_index.counts
        small = np.flatnonzero((counts > 0) & (counts < self.images_per_class))
        if small.size and small_class_policy == "error":
            raise ValueError(
                f"{owner}: {small.size} classes have fewer images than the {self.images_per_class} each needs per batch "
                f"(global batch {global_batch} / classes_per_batch {classes_per_batch}), e.g. class {int(small[0])} with "
                f"{int(counts[small[0]])}. Set small_class_policy to 'replacement' or 'exclude', or raise classes_per_batch."
            )
        eligible = counts > 0
        if small_class_policy == "exclude":
            eligible &= counts >= self.images_per_class
        self.eligible_classes = np.flatnonzero(eligible)
        if self.eligible_classes.size < classes_per_batch:
            raise ValueError(
                f"{owner}: classes_per_batch={classes_per_batch} but only {self.eligible_classes.size} classes can be "
                f"sampled (non-empty{', with at least %d images' % self.images_per_class if small_class_policy == 'exclude' else ''})."
            )
        eligible_counts = counts[self.eligible_classes].astype(np.float64)
        self.num_batches = num_batches_per_epoch or int(eligible_counts.sum()) // global_batch
        if self.num_batches == 0:
            raise ValueError(
                f"{owner}: {int(eligible_counts.sum())} sampleable images are fewer than one global batch of "
                f"{global_batch}; set num_batches_per_epoch or lower the batch size."
            )
        self.class_probabilities = eligible_counts / eligible_counts.sum()
        self.slot_targets = capped_slot_targets(self.class_probabilities, self.num_batches * classes_per_batch, self.num_batches)
        natural = self.class_probabilities * self.num_batches * classes_per_batch
        capped = natural > self.slot_targets + 1e-9
        if capped.any():
            warnings.warn(
                f"{owner}: {int(capped.sum())} classes are too frequent to keep their marginal: a class fills at most "
                f"one slot (1/classes_per_batch = 1/{classes_per_batch} of a batch) per batch, so they are capped at "
                "every batch and the other classes are raised in proportion.",
                stacklevel=2,
            )

    @property
    def target_class_frequencies(self) -> np.ndarray:
        """Expected share of each class (indexed by label) among the epoch's images."""
        share = np.zeros(self.class_index.num_classes)
        share[self.eligible_classes] = self.slot_targets / self.slot_targets.sum()
        return share

    def _global_length(self) -> int:
        return self.num_batches * self.global_batch_size

    def _global_sequence(self, epoch: int) -> np.ndarray:
        rng = epoch_rng(self.seed, epoch)
        nb, k, m, w = self.num_batches, self.classes_per_batch, self.images_per_class, self.world_size
        slots = systematic_round(self.slot_targets, rng)
        class_order = rng.permutation(self.eligible_classes.size)
        slot_classes = np.repeat(self.eligible_classes[class_order], slots[class_order])
        batch_classes = slot_classes.reshape(k, nb).T[rng.permutation(nb)]  # (nb, K), distinct per row
        images = self.class_index.draw(batch_classes.reshape(-1), np.full(nb * k, m), rng).reshape(nb, k * m)
        if self.rank_classes == "shared":
            chunks = images.reshape(nb, self.batch_size, w).transpose(0, 2, 1)  # rank r gets positions r, r+w, ...
        else:
            chunks = images.reshape(nb, w, self.batch_size)  # rank r gets whole classes r*K/w .. (r+1)*K/w - 1
        return rng.permuted(chunks, axis=2).reshape(-1)
