"""A labelled dataset seen as augmented views, and the collation of its items into batches.

Training and evaluation both read data as ``(views, label, index)`` items: the views
transform of ``config.DATA.<split>.TRANSFORM`` applied to one ``(image, label)`` of a
data source. ``collate_views`` stacks a list of such items into the batch dict the
trainer and the feature extractor consume.
"""
from __future__ import annotations

from typing import Any, Dict

import numpy as np
import torch
from torch.utils.data import Dataset


class ViewsDataset(Dataset):
    """Applies a views transform to a labelled dataset: item -> (views, label, index).

    The augmentation of an item is seeded by (seed, epoch, index), not by the
    process's RNG stream, so it does not depend on the number of data-loader
    workers, on the rank that loads it, or on where a run was resumed.
    """

    def __init__(self, base: Dataset, transform, seed: int = 0):
        self.base, self.transform, self.seed, self.epoch = base, transform, int(seed), 0
        self.targets = list(getattr(base, "targets", []))
        self.num_classes = getattr(base, "num_classes", None)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        image, label = self.base[index]
        if self.transform is None:
            return [image], int(label), int(index)
        item_seed = int(np.random.SeedSequence([self.seed, self.epoch, int(index)]).generate_state(1)[0])
        with torch.random.fork_rng(devices=[]):
            # Only the CPU generator: torch.manual_seed would also queue lazy CUDA seeding per item.
            torch.default_generator.manual_seed(item_seed)
            views = self.transform(image)
        return views, int(label), int(index)


def collate_views(items) -> Dict[str, Any]:
    """``[(views, label, index), ...]`` -> ``{"views": [one (N, C, H, W) tensor per view], "label": (N,), "index": (N,)}``."""
    views, labels, indices = zip(*items)
    return {
        "views": [torch.stack(per_view) for per_view in zip(*views)],
        "label": torch.tensor(labels, dtype=torch.long),
        "index": torch.tensor(indices, dtype=torch.long),
    }
