"""Long-tailed subsets of any labelled source (CIFAR-LT style), and head/medium/tail class groups.

CIFAR-10/100-LT (Cui et al., "Class-Balanced Loss Based on Effective Number of
Samples", arXiv:1901.05555; Cao et al., LDAM, arXiv:1906.07413) keep, for class
``i`` of ``C`` (``i = 0`` is the head), ``n_i = floor(n_max * rho^(-i / (C - 1)))``
images, where ``rho`` (the imbalance ratio) is ``n_max / n_min``. That is the
``exponential`` profile. The ``power_law`` profile keeps
``n_i = floor(n_max * (i + 1)^(-a))`` with ``a = ln(rho) / ln(C)``, which gives the
same head-to-tail ratio but falls faster among the head classes and flattens
toward the tail, so more classes sit near the tail size (closer to the shape of
iNaturalist's histogram). Every kept class has at least one image.

``n_max`` defaults to the size of the smallest class of the source, so every
class can supply its quota; which images are kept is drawn from ``seed`` alone
(independent of the training seed, so a subset stays fixed across runs). Class
``class_order="index"`` makes label 0 the head, as in CIFAR-LT; ``random`` draws the
order from ``seed``.

Class groups for evaluation follow iNaturalist's convention: head classes have
more than ``head_min`` (100) training images, tail classes fewer than ``tail_max``
(20), medium the rest. ``write_class_histogram`` records the histogram and the
groups as JSON in the run directory.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

import numpy as np
from torch.utils.data import Dataset, Subset

PROFILES = ("exponential", "power_law")
CLASS_ORDERS = ("index", "random")
HISTOGRAM_FILE = "class_histogram.json"


def long_tail_class_sizes(num_classes: int, head_size: int, profile: str, imbalance_ratio: float) -> np.ndarray:
    """Images per class, head first, for ``profile`` (see the module docstring)."""
    if profile not in PROFILES:
        raise ValueError(f"LONG_TAIL.PROFILE must be one of {list(PROFILES)}, got {profile!r}.")
    if isinstance(imbalance_ratio, bool) or not isinstance(imbalance_ratio, (int, float)) or imbalance_ratio < 1:
        raise ValueError(f"LONG_TAIL.IMBALANCE_RATIO must be a number >= 1 (largest / smallest class), got {imbalance_ratio!r}.")
    position = np.arange(num_classes, dtype=np.float64)
    if num_classes == 1:
        shape = np.ones(1)
    elif profile == "exponential":
        shape = float(imbalance_ratio) ** (-position / (num_classes - 1))
    else:
        shape = (position + 1) ** (-np.log(imbalance_ratio) / np.log(num_classes))
    # The tiny epsilon keeps exact products such as 500 * 0.1 from flooring to 49.
    return np.maximum(1, np.floor(head_size * shape + 1e-9)).astype(np.int64)


def class_groups(counts: np.ndarray, head_min: int = 100, tail_max: int = 20) -> Dict[str, List[int]]:
    """Head (> ``head_min`` images), medium (``tail_max``..``head_min``) and tail (< ``tail_max``) classes.

    Classes without images belong to no group.
    """
    for name, value in (("HEAD_MIN", head_min), ("TAIL_MAX", tail_max)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"LONG_TAIL.{name} must be an int >= 0, got {value!r}.")
    if tail_max > head_min + 1:
        raise ValueError(f"LONG_TAIL.TAIL_MAX={tail_max} must not exceed HEAD_MIN + 1 = {head_min + 1} (groups would overlap).")
    counts = np.asarray(counts)
    present = counts > 0
    return {
        "head": np.flatnonzero(present & (counts > head_min)).tolist(),
        "medium": np.flatnonzero(present & (counts >= tail_max) & (counts <= head_min)).tolist(),
        "tail": np.flatnonzero(present & (counts < tail_max)).tolist(),
    }


def class_counts_of(dataset: Any) -> np.ndarray:
    targets = getattr(dataset, "targets", None)
    if targets is None:
        raise ValueError(f"{type(dataset).__name__} has no `targets`: a class histogram needs a labelled data source.")
    targets = np.asarray(targets, dtype=np.int64)
    num_classes = int(getattr(dataset, "num_classes", 0) or 0)
    return np.bincount(targets, minlength=max(num_classes, int(targets.max()) + 1 if targets.size else 0))


class LongTailSubset(Subset):
    """A subset of a labelled dataset with a long-tailed class histogram.

    Exposes ``targets``, ``num_classes`` (of the source), ``class_counts``,
    ``class_groups(head_min, tail_max)``, ``histogram(...)`` and ``write_histogram(run_dir, ...)``.
    """

    def __init__(self, dataset: Dataset, indices: np.ndarray, source_targets: np.ndarray, settings: Dict[str, Any]) -> None:
        super().__init__(dataset, indices.tolist())
        self.targets = source_targets[indices].tolist()
        self.num_classes = int(getattr(dataset, "num_classes", 0) or 0) or (int(source_targets.max()) + 1)
        self.classes = getattr(dataset, "classes", ())
        self.class_counts = np.bincount(np.asarray(self.targets, dtype=np.int64), minlength=self.num_classes)
        self.settings = settings

    def class_groups(self, head_min: int = 100, tail_max: int = 20) -> Dict[str, List[int]]:
        return class_groups(self.class_counts, head_min, tail_max)

    def histogram(self, head_min: int = 100, tail_max: int = 20) -> Dict[str, Any]:
        return histogram_record(self.class_counts, head_min, tail_max, long_tail=self.settings)

    def write_histogram(self, run_dir: str, head_min: int = 100, tail_max: int = 20) -> str:
        return write_class_histogram(self, run_dir, head_min, tail_max)


def histogram_record(counts: np.ndarray, head_min: int, tail_max: int, long_tail: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    counts = np.asarray(counts, dtype=np.int64)
    present = counts[counts > 0]
    groups = class_groups(counts, head_min, tail_max)
    return {
        "num_images": int(counts.sum()),
        "num_classes": int(counts.size),
        "num_nonempty_classes": int(present.size),
        "max_class_size": int(present.max()) if present.size else 0,
        "min_class_size": int(present.min()) if present.size else 0,
        "imbalance_ratio": float(present.max() / present.min()) if present.size else 0.0,
        "long_tail": long_tail,
        "head_min": head_min,
        "tail_max": tail_max,
        "group_sizes": {name: len(ids) for name, ids in groups.items()},
        "group_images": {name: int(counts[ids].sum()) for name, ids in groups.items()},
        "groups": groups,
        "class_counts": counts.tolist(),
    }


def write_class_histogram(dataset: Any, run_dir: str, head_min: int = 100, tail_max: int = 20) -> str:
    """Write ``<run_dir>/class_histogram.json`` (counts, groups, long-tail settings) atomically; return its path."""
    from ssl_ext.utils.io import atomic_write_text

    if isinstance(dataset, LongTailSubset):
        record = dataset.histogram(head_min, tail_max)
    else:
        record = histogram_record(class_counts_of(dataset), head_min, tail_max)
    path = os.path.join(run_dir, HISTOGRAM_FILE)
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return path


def make_long_tailed(
    dataset: Dataset,
    profile: str = "exponential",
    imbalance_ratio: float = 100.0,
    seed: int = 0,
    head_size: int = 0,
    class_order: str = "index",
) -> LongTailSubset:
    """A long-tailed subset of ``dataset`` (which must expose ``targets``); see the module docstring."""
    if class_order not in CLASS_ORDERS:
        raise ValueError(f"make_long_tailed: class_order must be one of {list(CLASS_ORDERS)}, got {class_order!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"LONG_TAIL.SEED must be an int >= 0, got {seed!r}.")
    if isinstance(head_size, bool) or not isinstance(head_size, int) or head_size < 0:
        raise ValueError(f"make_long_tailed: head_size must be an int >= 0 (0: the smallest class's size), got {head_size!r}.")
    counts = class_counts_of(dataset)
    targets = np.asarray(dataset.targets, dtype=np.int64)
    present = np.flatnonzero(counts > 0)
    if present.size == 0:
        raise ValueError("make_long_tailed: the dataset has no labelled images.")
    rng = np.random.default_rng([seed, 0x17])
    order = rng.permutation(present) if class_order == "random" else present
    head = head_size or int(counts[present].min())
    sizes = long_tail_class_sizes(order.size, head, profile, imbalance_ratio)
    short = np.flatnonzero(sizes > counts[order])
    if short.size:
        c = int(order[short[0]])
        raise ValueError(
            f"make_long_tailed: class {c} has {int(counts[c])} images but the profile needs {int(sizes[short[0]])} "
            f"(head_size={head}); lower head_size or leave it at 0."
        )
    quota = np.zeros(counts.size, dtype=np.int64)
    quota[order] = sizes
    # Keep the first quota[c] images of each class in a seeded random order (vectorized per-class choice).
    shuffled = np.lexsort((rng.random(targets.size), targets))
    rank_in_class = np.empty(targets.size, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank_in_class[shuffled] = np.arange(targets.size) - starts[targets[shuffled]]
    kept = np.flatnonzero(rank_in_class < quota[targets])
    settings = {"profile": profile, "imbalance_ratio": float(imbalance_ratio), "seed": seed, "head_size": head,
                "class_order": [int(c) for c in order]}
    return LongTailSubset(dataset, kept, targets, settings)
