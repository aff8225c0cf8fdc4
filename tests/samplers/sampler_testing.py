"""Helpers for the sampler tests: a label-only dataset and rank-simulated sampler sets."""
import numpy as np

from registry import SAMPLERS, build_sampler

# Every registered sampler: a new one is covered by the contract tests without editing a list.
SAMPLER_NAMES = SAMPLERS.names()


class LabelsOnly:
    """Samplers only read ``targets`` (and ``len``): no images needed, even at iNat scale."""

    def __init__(self, targets, num_classes=None):
        self.targets = np.asarray(targets, dtype=np.int64)
        self.num_classes = int(num_classes if num_classes is not None else self.targets.max() + 1)

    def __len__(self):
        return self.targets.size


def counts_to_labels(counts):
    return np.repeat(np.arange(len(counts)), counts)


def all_ranks(name, dataset, batch_size, world_size, seed=0, drop_last=True, **params):
    return [
        build_sampler({"NAME": name, "PARAMS": params}, dataset=dataset, batch_size=batch_size, rank=r,
                      world_size=world_size, seed=seed, drop_last=drop_last)
        for r in range(world_size)
    ]


def global_batches(samplers, epoch):
    """Reassemble global batches from the ranks' epochs: row i = rank 0's i-th chunk, rank 1's, ..."""
    batch = samplers[0].batch_size
    parts = []
    for s in samplers:
        s.set_epoch(epoch)
        indices = np.fromiter(iter(s), dtype=np.int64)
        assert indices.size == len(s)
        parts.append(indices.reshape(-1, batch))
    return np.concatenate(parts, axis=1)
