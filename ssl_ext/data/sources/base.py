"""What every ssl_ext data source shares.

A data source is a map-style dataset of ``(PIL image, int label)`` items that
exposes ``targets`` (list of int labels, one per item) and ``num_classes``. It is
built by the core with::

    build_data_source({"NAME": name, "PARAMS": SOURCE_PARAMS}, split="train"|"val",
                      data_path=..., dataset_name=..., skip_corrupt=...)

so every source's ``__init__`` starts with ``split, data_path, dataset_name,
skip_corrupt`` followed by its own typed parameters.
"""
from __future__ import annotations

from typing import Any, List, Sequence

from torch.utils.data import Dataset

SPLITS = ("train", "val")


def normalize_split(owner: str, split: Any) -> str:
    """Accept ``train``/``val`` in any case (the core uses TRAIN/VAL section names)."""
    value = str(split).lower()
    if value not in SPLITS:
        raise ValueError(f"{owner}: split must be one of {list(SPLITS)}, got {split!r}.")
    return value


def check_int(owner: str, name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{owner}: {name} must be an int >= {minimum}, got {value!r}.")


def check_channels(owner: str, channels: Any) -> None:
    if channels not in (1, 3):
        raise ValueError(f"{owner}: channels must be 1 (grayscale) or 3 (RGB), got {channels!r}.")


class LabelledSource(Dataset):
    """Base of the built-in sources: holds ``targets`` and ``num_classes``."""

    targets: List[int]
    num_classes: int
    classes: Sequence[str] = ()

    def __len__(self) -> int:
        return len(self.targets)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(split={getattr(self, 'split', '?')!r}, size={len(self)}, num_classes={self.num_classes})"
