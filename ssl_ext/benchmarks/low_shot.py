"""``low_shot`` engine: logistic regression on a few labelled images per class.

The semi-supervised evaluation of SimCLR (arXiv:2002.05709) and MSN (Assran et
al. 2022, "Masked Siamese Networks for Label-Efficient Learning",
arXiv:2204.07141): a linear classifier is fitted on the frozen, L2-normalized
features of a small labelled subset of train and evaluated on all of val. MSN
fits a multinomial logistic regression (cyanure) with a per-sample L2 penalty
lambda; with scikit-learn's ``LogisticRegression`` that is ``C = 1 / (lambda * n)``.

Subsets (``BENCHMARK.LOW_SHOT``):

* ``PERCENTS``: p % of every class's train images, rounded, at least one per
  class (ImageNet 1 % has ~13 images per class; per-class draws keep rare classes
  of long-tailed sets present, which a uniform draw would not);
* ``PER_CLASS``: N images of every class (all of a class with fewer than N).

Each subset is drawn ``NUM_DRAWS`` times with seeds ``SEED_VALUE + draw``; the
result is the mean ± standard deviation (population std) over draws. Draws are
spread over the ranks and gathered.

With several ``LAMBDAS``, each draw chooses its lambda on a seeded, stratified
holdout of train that no subset draws from (``BENCHMARK.SELECT_ON``,
``ssl_ext.benchmarks.selection``), never on val unless ``SELECT_ON: val`` is set
(then the rows say "best on val"); the rows list each draw's chosen lambda.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
from omegaconf import DictConfig

from registry import register_engine
from ssl_ext.benchmarks import feature_store
from ssl_ext.benchmarks.extraction import ensure_features
from ssl_ext.benchmarks.metrics import GROUP_NAMES, classification_metrics
from ssl_ext.benchmarks.results import output_dir, write_results
from ssl_ext.benchmarks.selection import LABELS, method_label, selection_settings, stratified_holdout
from ssl_ext.utils import distributed as du

logger = logging.getLogger(__name__)


def subset_specs(low_shot_cfg: Any) -> List[Tuple[str, str, float]]:
    """(label, kind, amount) of every configured subset, e.g. ("1%", "percent", 1.0), ("5/class", "per_class", 5)."""
    specs = []
    for p in low_shot_cfg.PERCENTS:
        p = float(p)
        if not 0 < p <= 100:
            raise ValueError(f"config.BENCHMARK.LOW_SHOT.PERCENTS: {p} is not in (0, 100]")
        specs.append((f"{p:g}%", "percent", p))
    for n in low_shot_cfg.PER_CLASS:
        if int(n) < 1:
            raise ValueError(f"config.BENCHMARK.LOW_SHOT.PER_CLASS: {n} must be a positive int")
        specs.append((f"{int(n)}/class", "per_class", int(n)))
    if not specs:
        raise ValueError("config.BENCHMARK.LOW_SHOT: PERCENTS and PER_CLASS are both empty; give at least one subset")
    return specs


def draw_subset(labels: np.ndarray, kind: str, amount: float, seed: int) -> np.ndarray:
    """Sorted train indices of one random per-class subset (see the module docstring)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        if kind == "percent":
            take = max(1, int(round(members.size * amount / 100.0)))
        else:
            take = int(amount)
        chosen.append(rng.choice(members, size=min(take, members.size), replace=False))
    return np.sort(np.concatenate(chosen))


def l2_normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def fit_and_score(
    train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, penalty: float, max_iter: int, num_classes: int
) -> np.ndarray:
    """Fit multinomial logistic regression; return val class scores (Nv, num_classes)."""
    from sklearn.linear_model import LogisticRegression

    scores = np.full((val_x.shape[0], num_classes), -np.inf, dtype=np.float64)
    present = np.unique(train_y)
    if present.size == 1:  # sklearn needs two classes; one class predicts itself
        scores[:, present[0]] = 0.0
        return scores
    model = LogisticRegression(C=1.0 / (penalty * train_x.shape[0]), max_iter=max_iter)
    model.fit(train_x, train_y)
    # Log-probabilities have one column per class also with two classes (decision_function has one).
    scores[:, model.classes_] = model.predict_log_proba(val_x)
    return scores


def _mean_std(values: List[float]) -> Tuple[float, float]:
    array = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(array)), float(np.nanstd(array))


def penalties(low_cfg: Any) -> List[float]:
    values = [float(x) for x in (low_cfg.LAMBDAS or [])]
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"config.BENCHMARK.LOW_SHOT.LAMBDAS must be a non-empty list of positive numbers, got {list(low_cfg.LAMBDAS)}")
    return values


def _run_layer(cfg: DictConfig, features: Dict[str, Any], layer: str) -> List[Dict[str, Any]]:
    low = cfg.config.BENCHMARK.LOW_SHOT
    lambdas, max_iter, draws = penalties(low), int(low.MAX_ITER), int(low.NUM_DRAWS)
    if draws < 1:
        raise ValueError(f"config.BENCHMARK.LOW_SHOT.NUM_DRAWS must be >= 1, got {draws}")
    select_on, fraction = selection_settings(cfg)
    train, val, num_classes, groups = feature_store.load_train_val(cfg, features, layer)
    train_x, val_x = l2_normalize(train.features.astype(np.float64)), l2_normalize(val.features.astype(np.float64))
    val_y = torch.from_numpy(val.labels)
    # Subsets are drawn from the kept part of train; lambda is chosen on the held-out part (never val by default).
    pool = np.arange(train.labels.size)
    held = None
    if select_on == "train_holdout" and len(lambdas) > 1:
        pool, held = stratified_holdout(train.labels, fraction, int(cfg.config.SEED_VALUE))
    specs = subset_specs(low)
    jobs = [(s, d) for s in range(len(specs)) for d in range(draws)]
    mine = {}
    for job_index, (s, d) in enumerate(jobs):
        if job_index % du.get_world_size() != du.get_rank():
            continue
        label, kind, amount = specs[s]
        subset = pool[draw_subset(train.labels[pool], kind, amount, int(cfg.config.SEED_VALUE) + d)]
        fits = {}
        for penalty in lambdas:
            queries = val_x if held is None else np.concatenate([val_x, train_x[held]])
            scores = fit_and_score(train_x[subset], train.labels[subset], queries, penalty, max_iter, num_classes)
            fits[penalty] = scores
        if held is None:
            choice = {p: classification_metrics(torch.from_numpy(sc), val_y, None)["top1"] for p, sc in fits.items()}
        else:
            held_y = torch.from_numpy(train.labels[held])
            choice = {p: classification_metrics(torch.from_numpy(sc[val_x.shape[0]:]), held_y, None)["top1"] for p, sc in fits.items()}
        chosen = max(lambdas, key=lambda p: (choice[p], p))  # ties go to the stronger penalty
        metrics = classification_metrics(torch.from_numpy(fits[chosen][: val_x.shape[0]]), val_y, groups)
        mine[(s, d)] = {**metrics, "images": int(subset.size), "lambda": chosen}
    merged = {}
    for part in du.all_gather_object(mine):
        merged.update(part)
    rows = []
    selected_on = LABELS[select_on] if len(lambdas) > 1 else "fixed"
    for s, (label, _, _) in enumerate(specs):
        runs = [merged[(s, d)] for d in range(draws)]
        row: Dict[str, Any] = {
            "layer": layer, "method": method_label("logistic regression", select_on if len(lambdas) > 1 else "fixed"),
            "subset": label, "draws": draws,
        }
        row["top1"], row["top1_std"] = _mean_std([r["top1"] for r in runs])
        row["top5"], row["top5_std"] = _mean_std([r["top5"] for r in runs])
        if groups is not None:
            for name in GROUP_NAMES:
                row[name], row[f"{name}_std"] = _mean_std([r[name] for r in runs])
        row["images"] = _mean_std([r["images"] for r in runs])[0]
        row["lambda"] = ", ".join(f"{r['lambda']:g}" for r in runs)  # the chosen point of every draw
        row["selected_on"] = selected_on
        row["runs"] = runs
        rows.append(row)
    return rows


@register_engine("low_shot")
def low_shot_engine(cfg: DictConfig) -> Dict[str, Any]:
    features = ensure_features(cfg)
    started = time.time()
    rows = []
    for layer in features["layers"]:
        rows += _run_layer(cfg, features, layer)
    for row in rows:
        row["seconds"] = round(time.time() - started, 3)
    result = {
        "engine": "low_shot",
        "lambdas": penalties(cfg.config.BENCHMARK.LOW_SHOT),
        "features_dir": features["features_dir"],
        "rows": [{k: v for k, v in row.items() if k != "runs"} for row in rows],
        "runs": {f"{row['layer']}/{row['subset']}": row["runs"] for row in rows},
    }
    if du.is_primary():
        result["files"] = write_results(output_dir(cfg, "low_shot"), result, "Low-shot logistic regression, top-1 % (mean ± std over draws)")
        for row in result["rows"]:
            logger.info("low_shot %s %s: top-1 %.2f ± %.2f%%", row["layer"], row["subset"], row["top1"], row["top1_std"])
    return result
