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
(independent of the training seed, so a subset stays fixed across runs). Which
class becomes the head is ``class_order``: ``random`` (the default in configs) draws
a permutation from ``class_order_seed``; ``index`` makes label 0 the head, as in
CIFAR-LT; an explicit list of class ids gives the order head first. With a fixed
order, "tail accuracy" partly measures which classes happen to be easy (on
Fashion-MNIST, ``index`` makes Sneaker, Bag and Ankle boot the tail, easy classes),
so studies average over several class-order seeds.

Class groups for evaluation follow iNaturalist's convention: head classes have
more than ``head_min`` (100) training images, tail classes fewer than ``tail_max``
(20), medium the rest. There is one set of thresholds per dataset, in the dataset
catalog (``class_groups: {head_min, tail_max}`` of the entry named by
``DATASET_NAMES``, else of the entry named like the data source); a config's
``LONG_TAIL.HEAD_MIN``/``TAIL_MAX`` override it when >= 0 (``group_thresholds``).
``write_class_histogram`` records the histogram and the groups as JSON in the run
directory.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from torch.utils.data import Dataset, Subset

PROFILES = ("exponential", "power_law")
# The iNaturalist thresholds, used when neither the config nor the catalog sets them.
DEFAULT_HEAD_MIN, DEFAULT_TAIL_MAX = 100, 20
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

    def thresholds(self, head_min: int = -1, tail_max: int = -1) -> Tuple[int, int]:
        """The given thresholds; -1 takes the ones resolved when the subset was built from a config."""
        default = self.settings.get("thresholds", (DEFAULT_HEAD_MIN, DEFAULT_TAIL_MAX))
        return (head_min if head_min >= 0 else int(default[0])), (tail_max if tail_max >= 0 else int(default[1]))

    def class_groups(self, head_min: int = -1, tail_max: int = -1) -> Dict[str, List[int]]:
        return class_groups(self.class_counts, *self.thresholds(head_min, tail_max))

    def histogram(self, head_min: int = -1, tail_max: int = -1) -> Dict[str, Any]:
        return histogram_record(self.class_counts, *self.thresholds(head_min, tail_max), long_tail=self.settings)

    def write_histogram(self, run_dir: str, head_min: int = -1, tail_max: int = -1) -> str:
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


def write_class_histogram(dataset: Any, run_dir: str, head_min: int = -1, tail_max: int = -1) -> str:
    """Write ``<run_dir>/class_histogram.json`` (counts, groups, long-tail settings) atomically; return its path.

    Thresholds of -1 are the subset's own (resolved from its config and the catalog), else iNaturalist's.
    """
    from ssl_ext.utils.io import atomic_write_text

    if isinstance(dataset, LongTailSubset):
        record = dataset.histogram(head_min, tail_max)
    else:
        head_min = head_min if head_min >= 0 else DEFAULT_HEAD_MIN
        tail_max = tail_max if tail_max >= 0 else DEFAULT_TAIL_MAX
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
    class_order: Union[str, Sequence[int]] = "index",
    class_order_seed: Optional[int] = None,
) -> LongTailSubset:
    """A long-tailed subset of ``dataset`` (which must expose ``targets``); see the module docstring.

    ``class_order_seed`` (default: ``seed``) draws the ``random`` order, independently of which images are kept.
    """
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
    order = resolve_class_order(class_order, present, seed if class_order_seed is None else class_order_seed)
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
                "class_order": [int(c) for c in order],
                "class_order_rule": class_order if isinstance(class_order, str) else "explicit",
                "class_order_seed": None if class_order != "random" else int(seed if class_order_seed is None else class_order_seed)}
    return LongTailSubset(dataset, kept, targets, settings)


def resolve_class_order(class_order: Union[str, Sequence[int]], present: np.ndarray, seed: int) -> np.ndarray:
    """Classes head first: ``index``, a ``random`` permutation from ``seed``, or an explicit list.

    An explicit list may be given as a sequence of ints or as a comma-separated string
    (``"7,3,0,..."``, the form a YAML string key takes); it must hold every class that has images, once.
    """
    if isinstance(class_order, str) and "," not in class_order and not class_order.strip().isdigit():
        if class_order not in CLASS_ORDERS:
            raise ValueError(
                f"LONG_TAIL.CLASS_ORDER must be random, index or a list of class ids head first "
                f"(e.g. '3,1,0,2'), got {class_order!r}."
            )
        if class_order == "index":
            return present
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"LONG_TAIL.CLASS_ORDER_SEED must be an int >= 0, got {seed!r}.")
        return np.random.default_rng([seed, 0xC1A55]).permutation(present)
    try:
        ids = [int(c) for c in (class_order.split(",") if isinstance(class_order, str) else class_order)]
    except (TypeError, ValueError):
        raise ValueError(f"LONG_TAIL.CLASS_ORDER: {class_order!r} is not a list of class ids.") from None
    if sorted(ids) != sorted(int(c) for c in present):
        raise ValueError(
            f"LONG_TAIL.CLASS_ORDER={class_order!r} must list every class with images exactly once, head first; "
            f"the classes are {[int(c) for c in present]}."
        )
    return np.asarray(ids, dtype=np.int64)


def _catalog_thresholds(split_cfg: Any) -> Optional[Tuple[int, int]]:
    from ssl_ext.data.catalog import class_group_thresholds

    names = [str(n) for n in (split_cfg.get("DATASET_NAMES") or []) if str(n)]
    sources = [str(s) for s in (split_cfg.get("DATA_SOURCES") or [])]
    for name in names[:1] + sources[:1]:
        found = class_group_thresholds(name)
        if found is not None:
            return found
    return None


def group_thresholds(split_cfg: Any) -> Tuple[int, int]:
    """(head_min, tail_max) for ``DATA.<split>``: the config's when >= 0, else the catalog's, else 100 / 20."""
    long_tail = split_cfg.get("LONG_TAIL") or {}
    head_min, tail_max = int(long_tail.get("HEAD_MIN", -1)), int(long_tail.get("TAIL_MAX", -1))
    if head_min >= 0 and tail_max >= 0:
        return head_min, tail_max
    catalog_head, catalog_tail = _catalog_thresholds(split_cfg) or (DEFAULT_HEAD_MIN, DEFAULT_TAIL_MAX)
    return (head_min if head_min >= 0 else catalog_head), (tail_max if tail_max >= 0 else catalog_tail)


def long_tailed_from_config(dataset: Dataset, split_cfg: Any) -> LongTailSubset:
    """``make_long_tailed`` with ``DATA.<split>.LONG_TAIL``'s settings; the subset remembers its group thresholds."""
    long_tail = split_cfg.LONG_TAIL
    order = long_tail.get("CLASS_ORDER", "random")
    order = order if isinstance(order, str) else [int(c) for c in order]
    subset = make_long_tailed(
        dataset, profile=str(long_tail.PROFILE), imbalance_ratio=float(long_tail.IMBALANCE_RATIO),
        seed=int(long_tail.SEED), head_size=int(long_tail.get("HEAD_SIZE", 0)), class_order=order,
        class_order_seed=int(long_tail.get("CLASS_ORDER_SEED", long_tail.SEED)),
    )
    subset.settings["thresholds"] = list(group_thresholds(split_cfg))
    return subset
