"""``distributed_shuffle``: one global permutation per epoch, split across ranks.

Algorithm
---------
Each epoch, every rank draws the same permutation of all ``N`` dataset indices
from ``(seed, epoch)`` and takes its share of it (global batch ``i`` = positions
``i*B*W .. (i+1)*B*W - 1``; rank ``r`` takes the ``r``-th chunk of ``B`` of each).
Ranks therefore see disjoint indices within an epoch, and because the whole
dataset is reshuffled before splitting, a sample moves between ranks from one
epoch to the next. (VISSL's sampler shuffled only inside a fixed per-rank shard,
so a rank saw the same subset forever.)

* ``drop_last=True``: only full global batches, ``N // (B*W)`` of them; every rank
  yields ``N // (B*W) * B`` indices, all distinct across ranks.
* ``drop_last=False``: every sample is used; the permutation is padded with its own
  first entries to a multiple of ``W`` (as ``torch.utils.data.DistributedSampler``
  does) so every rank yields ``ceil(N / W)`` indices; the final, partial global batch
  is split evenly across ranks. Only the padded entries repeat.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from registry import register_sampler
from ssl_ext.samplers.base import ResumableSampler, epoch_rng


@register_sampler("distributed_shuffle")
class DistributedShuffleSampler(ResumableSampler):
    """Epoch-wise global shuffle across ranks; see the module docstring."""

    def __init__(self, dataset: Any, batch_size: int, rank: int, world_size: int, seed: int, drop_last: bool = True) -> None:
        super().__init__(dataset, batch_size, rank, world_size, seed, drop_last)
        if self.dataset_size == 0:
            raise ValueError("distributed_shuffle: the dataset is empty; check the data source and its path.")
        if drop_last and self.dataset_size < self.global_batch_size:
            raise ValueError(
                f"distributed_shuffle: the dataset has {self.dataset_size} samples, fewer than one global batch of "
                f"{self.batch_size} x {self.world_size} ranks = {self.global_batch_size}, so drop_last=True leaves "
                "nothing. Lower DATA.TRAIN.BATCHSIZE_PER_REPLICA or use a larger dataset."
            )

    def _global_length(self) -> int:
        if self.drop_last:
            return (self.dataset_size // self.global_batch_size) * self.global_batch_size
        return -(-self.dataset_size // self.world_size) * self.world_size

    def _global_sequence(self, epoch: int) -> np.ndarray:
        permutation = epoch_rng(self.seed, epoch).permutation(self.dataset_size)
        # np.resize repeats the permutation's head to pad (or truncates for drop_last).
        return np.resize(permutation, self._global_length())
