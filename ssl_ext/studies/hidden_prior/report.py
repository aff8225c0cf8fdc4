"""The study's report: tables, plots and plain statements of what did and did not reproduce.

Assran et al., "The Hidden Uniform Cluster Prior in Self-Supervised Learning", ICLR
2023, arXiv:2210.07277, make two claims tested here:

1. *Sampler study* (their Table 1): methods that maximize volume over the mini-batch
   (SimCLR, VICReg, MSN) lose accuracy when every mini-batch holds only a few classes,
   even though each class keeps its marginal frequency.
2. *Prior study*: on long-tailed data, PMSN (a power-law cluster prior) beats MSN (the
   hidden uniform prior), in particular on the rare classes.

A difference is called *within noise* when it is smaller than twice its standard
error. With several seeds that is the seed-to-seed standard error of the mean
difference; with one seed only the binomial standard error of the accuracies on the
validation images is available (``sqrt(p (1 - p) / n)`` per accuracy), which ignores
training noise and therefore understates the uncertainty: the report says which one
it used.
"""
from __future__ import annotations

import math
import os
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

GROUPS = ("head", "medium", "tail")


# ----------------------------------------------------------------- extraction
def linear_row(record: Dict[str, Any]) -> Dict[str, Any]:
    return record["results"]["linear"]["rows"][0]


def knn_row(record: Dict[str, Any], k: int) -> Dict[str, Any]:
    rows = record["results"]["knn"]["rows"]
    for row in rows:
        if int(row["k"]) == int(k):
            return row
    raise ValueError(f"kNN results of {record['key']} have no k={k} (have {[r['k'] for r in rows]}); set evaluation.knn_k")


def cluster_details(record: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(k-means summary at k = number of classes, label histogram summary) of the run's first layer."""
    layers = record["results"]["analysis"]["details"]["layers"]
    layer = next(iter(layers.values()))
    labels = layer["labels"]
    k = str(labels["num_clusters"])
    kmeans = layer["kmeans"].get(k) or next(iter(layer["kmeans"].values()))
    return kmeans, labels


def prototype_details(record: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    return record["results"]["analysis"]["details"].get("prototypes")


def val_counts(record: Dict[str, Any]) -> Dict[str, int]:
    """Validation images overall and per class group (for binomial standard errors)."""
    features = record["results"]["linear"].get("features_dir")
    counts = {"top1": 0}
    if features and os.path.exists(os.path.join(features, "val")):
        labels = _labels(os.path.join(features, "val"))
        if labels is not None:
            counts["top1"] = int(labels.size)
            groups = _groups(features)
            for name in GROUPS:
                if groups and name in groups:
                    counts[name] = int(np.isin(labels, groups[name]).sum())
    return counts


def _labels(folder: str) -> Optional[np.ndarray]:
    for name in sorted(os.listdir(folder)):
        if name.endswith("_labels.npy"):
            return np.load(os.path.join(folder, name))
    return None


def _groups(features_dir: str) -> Optional[Dict[str, List[int]]]:
    import json

    path = os.path.join(features_dir, "meta.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f).get("class_groups")


def balanced_group_accuracy(record: Dict[str, Any]) -> Optional[Dict[str, float]]:
    """Top-1 per long-tail class group of the probe fitted on the *balanced* train set (None when not run).

    The groups are the long-tailed run's own (its linear probe's feature meta); the per-class counts come from
    the balanced probe's results. Next to the long-tailed probe's group accuracy this separates a group's
    difficulty (low in both) from its rarity (low only when trained long-tailed).
    """
    balanced = record["results"].get("linear_balanced")
    groups = _groups(record["results"]["linear"].get("features_dir") or "")
    if not balanced or not groups or not balanced.get("per_class"):
        return None
    per_class = next(iter(balanced["per_class"].values()))
    correct, total = np.asarray(per_class["correct"]), np.asarray(per_class["total"])
    out = {"top1": 100.0 * correct.sum() / max(total.sum(), 1)}
    for name in GROUPS:
        ids = [int(c) for c in groups.get(name, [])]
        out[name] = 100.0 * correct[ids].sum() / total[ids].sum() if ids and total[ids].sum() else float("nan")
    return out


# ---------------------------------------------------------------- statistics
def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return float("nan"), float("nan")
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def fmt(mean: float, std: float = 0.0, seeds: int = 1, digits: int = 2) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if seeds > 1 else f"{mean:.{digits}f}"


def binomial_se(accuracy_percent: float, n: int) -> float:
    if not n or math.isnan(accuracy_percent):
        return float("nan")
    p = accuracy_percent / 100
    return 100 * math.sqrt(max(p * (1 - p), 0.0) / n)


def difference_verdict(a: List[float], b: List[float], n_a: int, n_b: int) -> Tuple[float, float, str, bool]:
    """(mean a - b, its standard error, which error, significant at 2 SE) for paired per-seed values."""
    diff = float(np.mean(a) - np.mean(b))
    if len(a) > 1 and len(a) == len(b):
        paired = np.asarray(a) - np.asarray(b)
        se, kind = float(np.std(paired, ddof=1) / math.sqrt(len(paired))), f"SE over {len(paired)} paired runs (seeds x class orders)"
    else:
        se = math.hypot(binomial_se(float(np.mean(a)), n_a), binomial_se(float(np.mean(b)), n_b))
        kind = "binomial SE of the val accuracies (one seed: training noise not included)"
    return diff, se, kind, bool(abs(diff) > 2 * se) if not math.isnan(se) else False


def group_records(records: List[Dict[str, Any]], study: str) -> "OrderedDict[str, List[Dict[str, Any]]]":
    grouped: "OrderedDict[str, List[Dict[str, Any]]]" = OrderedDict()
    for record in records:
        if record["study"] == study:
            grouped.setdefault(record["name"], []).append(record)
    return grouped


# ---------------------------------------------------------------------- plots
def _save(fig, path: str) -> str:
    import io

    import matplotlib.pyplot as plt

    from ssl_ext.utils.io import atomic_write_bytes

    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bar_plot(path: str, categories: List[str], series: Dict[str, List[float]], errors: Dict[str, List[float]],
             ylabel: str, title: str, floor: Optional[Dict[str, float]] = None) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(categories) + 2), 3.8))
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(categories))
    for i, (name, values) in enumerate(series.items()):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, yerr=errors.get(name), label=name, capsize=2)
    for j, (name, value) in enumerate((floor or {}).items()):
        ax.axhline(value, color="gray", linestyle=[":", "--", "-."][j % 3], linewidth=1, label=name)
    finite = [v for values in series.values() for v in values if not math.isnan(v)] + list((floor or {}).values())
    if finite:
        ax.set_ylim(max(0.0, min(finite) - 10), min(100.0, max(finite) + 5))
    ax.set_xticks(x)
    ax.set_xticklabels(categories, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)


def sorted_curves_plot(path: str, curves: List[Tuple[str, Sequence[float], str]], title: str, ylabel: str) -> str:
    """Sorted fractions on log-log axes; each curve is (label, sizes, matplotlib line style)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    for label, values, style in curves:
        values = np.sort(np.asarray(values, dtype=float))[::-1]
        fractions = values / values.sum()
        ranks = np.arange(1, fractions.size + 1)
        shown = fractions > 0
        ax.plot(ranks[shown], fractions[shown], style, marker=".", markersize=3, linewidth=1.2, label=label)
    if curves:
        k = len(curves[0][1])
        ax.plot(np.arange(1, k + 1), np.full(k, 1.0 / k), ":", color="black", linewidth=1, label="uniform")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rank (sorted by size)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=6.5)
    return _save(fig, path)
