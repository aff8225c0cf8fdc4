"""Accuracy metrics shared by the evaluation engines, including head/medium/tail groups.

Class groups follow the iNaturalist / long-tail convention (Liu et al. 2019,
"Large-Scale Long-Tailed Recognition in an Open World", arXiv:1904.05160): a
class is *head* when it has more than ``head_min`` training images, *tail* when
it has fewer than ``tail_max``, and *medium* otherwise; the thresholds are the
dataset's (catalog) unless the config sets them (``ssl_ext.data.long_tail.group_thresholds``). A group's accuracy is
the top-1 accuracy over the validation images whose label is in the group
(images, not classes, are averaged; with a balanced val set the two agree).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from omegaconf import DictConfig

GROUP_NAMES = ("head", "medium", "tail")
# "auto" reports groups for train sets whose largest class is more than this many times the smallest.
AUTO_IMBALANCE_RATIO = 10.0


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> Dict[int, torch.Tensor]:
    """Per-sample booleans: is the label among the ``k`` highest scores (``k`` capped at the class count)."""
    kmax = min(max(ks), scores.shape[1])
    top = scores.topk(kmax, dim=1).indices
    hits = top == labels.view(-1, 1)
    return {k: hits[:, : min(k, kmax)].any(dim=1) for k in ks}


def accuracy_percent(correct: torch.Tensor) -> float:
    return 100.0 * float(correct.float().mean()) if correct.numel() else float("nan")


def class_groups_from_counts(counts: np.ndarray, head_min: int, tail_max: int) -> Dict[str, List[int]]:
    """Head/medium/tail class ids from per-class training counts (classes with no image are left out)."""
    present = np.flatnonzero(counts > 0)
    return {
        "head": [int(c) for c in present if counts[c] > head_min],
        "medium": [int(c) for c in present if tail_max <= counts[c] <= head_min],
        "tail": [int(c) for c in present if counts[c] < tail_max],
    }


def group_accuracy(correct: torch.Tensor, labels: torch.Tensor, groups: Dict[str, List[int]]) -> Dict[str, float]:
    """Top-1 accuracy (percent) over the samples of each group; NaN for a group with no val sample."""
    result = {}
    for name in GROUP_NAMES:
        members = torch.as_tensor(groups.get(name, []), dtype=torch.long)
        mask = torch.isin(labels, members) if members.numel() else torch.zeros_like(labels, dtype=torch.bool)
        result[name] = accuracy_percent(correct[mask])
    return result


def class_groups_for(
    cfg: DictConfig, train_labels: np.ndarray, num_classes: int, known: Optional[Dict[str, List[int]]] = None
) -> Optional[Dict[str, List[int]]]:
    """Groups to report per ``BENCHMARK.CLASS_GROUPS`` (auto | always | never), or None.

    ``known`` are the groups the long-tailed train subset itself exposes (saved with
    the features); they are used as they are. Otherwise groups come from the
    histogram of ``train_labels``.
    """
    mode = str(cfg.config.BENCHMARK.CLASS_GROUPS)
    if mode not in ("auto", "always", "never"):
        raise ValueError(f"config.BENCHMARK.CLASS_GROUPS must be auto, always or never, got {mode!r}")
    if mode == "never":
        return None
    if known:
        return {name: [int(c) for c in known.get(name, [])] for name in GROUP_NAMES}
    from ssl_ext.data.long_tail import group_thresholds

    counts = np.bincount(np.asarray(train_labels, dtype=np.int64), minlength=num_classes)
    long_tail = cfg.config.DATA.TRAIN.LONG_TAIL
    if mode == "auto":
        present = counts[counts > 0]
        imbalanced = present.size > 0 and present.max() > AUTO_IMBALANCE_RATIO * present.min()
        if not (bool(long_tail.ENABLED) or imbalanced):
            return None
    return class_groups_from_counts(counts, *group_thresholds(cfg.config.DATA.TRAIN))


def classification_metrics(
    scores: torch.Tensor, labels: torch.Tensor, groups: Optional[Dict[str, List[int]]]
) -> Dict[str, float]:
    """top-1 / top-5 (percent) and, when ``groups`` is given, per-group top-1."""
    labels = labels.to(scores.device)
    correct = topk_correct(scores, labels, (1, 5))
    result = {"top1": accuracy_percent(correct[1]), "top5": accuracy_percent(correct[5])}
    if groups is not None:
        result.update(group_accuracy(correct[1].cpu(), labels.cpu(), groups))
    return result
