"""``cluster_analysis`` engine: the cluster prior a trained representation carries.

Assran, Balestriero, Duval, Bordes, Misra, Bojanowski, Vincent, Rabbat, Ballas, "The
Hidden Uniform Cluster Prior in Self-Supervised Learning", ICLR 2023, arXiv:2210.07277.
Methods with mini-batch volume maximization (SimCLR, VICReg, MSN) learn features that
split the data into clusters of equal size; this engine shows whether a checkpoint's
features do, on the images of ``ANALYSIS.SPLIT``:

* faiss k-means (``ssl_ext.analysis.kmeans``) on the trunk's features (the
  ``BENCHMARK.FEATURES`` cache, shared with linear eval and kNN), for k = multiples of
  the number of classes and any explicit k;
* the sorted cluster sizes against uniform and a fitted power law
  (``ssl_ext.analysis.power_law``), with the label histogram of the split as the
  reference the data itself would give, on log-log plots;
* purity and NMI of the clusters against the labels;
* for MSN/PMSN checkpoints, the same for the prototype usage
  (``ssl_ext.analysis.prototype_usage``), against the loss's prior.

Writes ``results.json`` (everything, including sorted sizes), ``results.md`` (one row
per clustering) and PNG plots into ``ANALYSIS.OUTPUT_DIR`` (default
``<CHECKPOINT.DIR>/cluster_analysis``). Run it on any checkpoint with
``tools/cluster_analysis.py``.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from omegaconf import DictConfig

from registry import register_engine
from ssl_ext.analysis.kmeans import agreement, run_kmeans
from ssl_ext.analysis.plots import plot_sorted_distributions
from ssl_ext.analysis.power_law import size_distribution_summary
from ssl_ext.utils import distributed as du

logger = logging.getLogger(__name__)

SPLITS = ("TRAIN", "VAL")
PROTOTYPE_MODES = ("auto", "always", "never")
# Row columns of results.md, in order (the full summaries are in results.json).
ROW_KEYS = (
    "layer", "clustering", "k", "purity", "nmi", "tau", "tau_least_squares", "uniform_null_tau_p95",
    "kl_uniform", "kl_power_law", "kl_prior", "largest_fraction", "imbalance_ratio", "empty_clusters",
)


def output_dir(cfg: DictConfig) -> str:
    explicit = str(cfg.config.ANALYSIS.OUTPUT_DIR or "")
    return explicit or os.path.join(str(cfg.config.CHECKPOINT.DIR), "cluster_analysis")


def run_name(weights: str) -> str:
    """A short name for plot titles: the last components of the run dir holding ``weights``."""
    folder = os.path.dirname(os.path.abspath(weights)) if weights != "random init" else ""
    if os.path.basename(folder) == "checkpoints":
        folder = os.path.dirname(folder)
    parts = [p for p in folder.split(os.sep) if p][-3:]
    return "/".join(parts) or weights


def cluster_counts(analysis_cfg: DictConfig, num_classes: int) -> List[int]:
    """k values: ``CLUSTERS_PER_CLASS`` multiples of ``num_classes`` then ``NUM_CLUSTERS``, deduplicated."""
    values: List[int] = []
    for key, scale in (("CLUSTERS_PER_CLASS", num_classes), ("NUM_CLUSTERS", 1)):
        for item in analysis_cfg[key]:
            if isinstance(item, bool) or not isinstance(item, int) or item < 1:
                raise ValueError(f"config.ANALYSIS.{key} must hold ints >= 1, got {item!r}")
            if int(item) * scale not in values:
                values.append(int(item) * scale)
    if not values:
        raise ValueError("config.ANALYSIS.CLUSTERS_PER_CLASS and NUM_CLUSTERS are both empty: give at least one k")
    return values


def _row(layer: str, clustering: str, k: int, summary: Dict[str, Any], scores: Optional[Dict[str, float]]) -> Dict[str, Any]:
    merged = {"layer": layer, "clustering": clustering, "k": k, **(scores or {}), **summary}
    return {key: merged[key] for key in ROW_KEYS if key in merged}


def analyze_features(
    features: np.ndarray,
    labels: np.ndarray,
    ks: Sequence[int],
    layer: str = "features",
    niter: int = 50,
    nredo: int = 3,
    spherical: bool = True,
    seed: int = 0,
    fit_method: str = "mle",
    null_draws: int = 200,
    init: str = "kmeans++",
) -> Dict[str, Any]:
    """k-means for each k, with size summaries and label agreement; plus the label histogram as reference."""
    labels = np.asarray(labels, dtype=np.int64)
    label_sizes = np.bincount(labels)
    reference = size_distribution_summary(label_sizes, fit_method, null_draws, seed)
    rows = [_row(layer, "labels", int(label_sizes.size), reference, None)]
    details: Dict[str, Any] = {"labels": reference, "kmeans": {}}
    for k in ks:
        result = run_kmeans(features, int(k), niter=niter, nredo=nredo, spherical=spherical, seed=seed, init=init)
        summary = size_distribution_summary(result.sizes, fit_method, null_draws, seed)
        scores = agreement(result.assignments, labels)
        summary.update(scores, objective=result.objective)
        details["kmeans"][int(k)] = summary
        rows.append(_row(layer, "kmeans", int(k), summary, scores))
    return {"rows": rows, "details": details}


def analyze_prototypes(
    usage: Dict[str, Any], labels: np.ndarray, fit_method: str = "mle", null_draws: int = 200, seed: int = 0
) -> Dict[str, Any]:
    """Size summaries of the soft and hard prototype usage (see ``prototype_usage``), against the loss's prior."""
    k = int(usage["soft"].size)
    prior = usage.get("prior")
    soft = size_distribution_summary(usage["soft"], fit_method, null_draws, seed, prior=prior, num_samples=len(labels))
    hard = size_distribution_summary(usage["hard"], fit_method, null_draws, seed, prior=prior)
    scores = agreement(usage["assignments"], labels)
    hard.update(scores)
    details = {"soft": soft, "hard": hard}
    if prior is not None:
        details["prior"] = size_distribution_summary(prior, fit_method, 0, seed)
    rows = [_row("prototypes", "prototype p̄ (soft)", k, soft, None), _row("prototypes", "prototype argmax", k, hard, scores)]
    return {"rows": rows, "details": details}


def write_plots(folder: str, details: Dict[str, Any], title: str) -> List[str]:
    """One log-log plot per k-means k (with the label histogram) and one for the prototypes."""
    paths = []
    for layer, layer_details in details.get("layers", {}).items():
        labels = layer_details["labels"]["sorted_sizes"]
        for k, summary in layer_details["kmeans"].items():
            curves = [(f"k-means, k={k}", summary["sorted_sizes"], False)]
            if int(k) == len(labels):
                curves.append(("class sizes (labels)", labels, True))
            paths.append(plot_sorted_distributions(
                curves, os.path.join(folder, f"kmeans_{layer}_k{k}.png"),
                f"{title}\n{layer}: k-means k={k}, purity {summary['purity']:.2f}, NMI {summary['nmi']:.2f}",
                fitted_tau=summary["tau"],
            ))
    prototypes = details.get("prototypes")
    if prototypes:
        curves = [("prototype p̄ (soft)", prototypes["soft"]["sorted_sizes"], False),
                  ("prototype argmax counts", prototypes["hard"]["sorted_sizes"], False)]
        if "prior" in prototypes:
            curves.append(("loss prior π", prototypes["prior"]["sorted_sizes"], True))
        paths.append(plot_sorted_distributions(
            curves, os.path.join(folder, "prototypes.png"), f"{title}\nprototype usage",
            fitted_tau=prototypes["soft"]["tau"], ylabel="mass",
        ))
    return paths


def _prototype_pass(cfg: DictConfig, split: str) -> Optional[Dict[str, Any]]:
    """Prototype usage on every rank (the image pass is sharded), or None when the loss has no prototypes."""
    from ssl_ext.analysis.prototype_usage import MissingLossState, load_loss_state, prototype_module, prototype_usage
    from ssl_ext.benchmarks.extraction import device_for, run_sharded, single_view_dataset
    from ssl_ext.engine.builders import build_loss, build_model
    from ssl_ext.engine.weights import load_weights_init

    c = cfg.config
    mode = str(c.ANALYSIS.PROTOTYPES)
    if mode == "never":
        return None
    loss = build_loss(cfg)
    module = prototype_module(loss)
    if module is None:
        if mode == "always":
            raise ValueError(
                f"config.ANALYSIS.PROTOTYPES=always but config.LOSS.NAME={c.LOSS.NAME} has no prototypes "
                f"(msn_loss / pmsn_loss have); use auto or never"
            )
        return None
    weights = str(c.MODEL.WEIGHTS_INIT.PARAMS_FILE or "")
    if not weights:
        if mode == "always":
            raise ValueError("Prototype usage needs a checkpoint: set config.MODEL.WEIGHTS_INIT.PARAMS_FILE (or ANALYSIS.PROTOTYPES=never)")
        logger.info("Random initialisation: no trained prototypes to analyse")
        return None
    try:
        load_loss_state(loss, weights)
    except MissingLossState:
        if mode == "always":
            raise
        logger.warning("%s has no loss state (not an ssl_ext training checkpoint): skipping the prototype usage", weights)
        return None
    device = device_for(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(c.SEED_VALUE))
        model = build_model(cfg)
    # Prototypes live in the space of the shared heads (what the EMA target network also has).
    model.student_heads = torch.nn.ModuleList()
    load_weights_init(model, c.MODEL.WEIGHTS_INIT)
    model.eval().to(device)
    dataset = single_view_dataset(cfg, split, transform_split="VAL")
    merged = run_sharded(cfg, dataset, lambda images: {"embedding": model([images])[0]}, device)
    usage = prototype_usage(merged["embedding"], module.cpu())
    usage["labels"] = merged["labels"].numpy()
    return usage


@register_engine("cluster_analysis")
def cluster_analysis_engine(cfg: DictConfig) -> Dict[str, Any]:
    from ssl_ext.benchmarks.extraction import ensure_features
    from ssl_ext.benchmarks.feature_store import load_feature_set
    from ssl_ext.benchmarks.results import write_results

    c = cfg.config
    a = c.ANALYSIS
    split = str(a.SPLIT).upper()
    if split not in SPLITS:
        raise ValueError(f"config.ANALYSIS.SPLIT must be one of {list(SPLITS)}, got {a.SPLIT!r}")
    if str(a.PROTOTYPES) not in PROTOTYPE_MODES:
        raise ValueError(f"config.ANALYSIS.PROTOTYPES must be one of {list(PROTOTYPE_MODES)}, got {a.PROTOTYPES!r}")
    if split not in [str(s).upper() for s in c.BENCHMARK.FEATURES.SPLITS]:
        raise ValueError(f"config.ANALYSIS.SPLIT={split} is not among config.BENCHMARK.FEATURES.SPLITS={list(c.BENCHMARK.FEATURES.SPLITS)}")
    features = ensure_features(cfg)
    usage = _prototype_pass(cfg, split)
    result: Dict[str, Any] = {}
    if du.is_primary():
        fit = dict(fit_method=str(a.POWER_LAW_FIT), null_draws=int(a.NULL_DRAWS), seed=int(c.SEED_VALUE))
        rows: List[Dict[str, Any]] = []
        details: Dict[str, Any] = {"layers": {}}
        for layer in features["layers"]:
            data = load_feature_set(features["features_dir"], split, layer)
            ks = cluster_counts(a, int(np.bincount(data.labels).size))
            analysis = analyze_features(
                data.features, data.labels, ks, layer=layer, niter=int(a.KMEANS.NITER), nredo=int(a.KMEANS.NREDO),
                spherical=bool(a.KMEANS.SPHERICAL), init=str(a.KMEANS.INIT), **fit,
            )
            rows += analysis["rows"]
            details["layers"][layer] = analysis["details"]
        if usage is not None:
            prototypes = analyze_prototypes(usage, usage["labels"], **fit)
            rows += prototypes["rows"]
            details["prototypes"] = prototypes["details"]
        folder = output_dir(cfg)
        weights = str(c.MODEL.WEIGHTS_INIT.PARAMS_FILE or "") or "random init"
        result = {
            "engine": "cluster_analysis", "split": split.lower(), "weights": weights, "features_dir": features["features_dir"],
            "rows": rows, "details": details,
        }
        result["plots"] = write_plots(folder, details, f"{run_name(weights)} ({split.lower()})")
        result["files"] = write_results(folder, result, f"Cluster analysis of {weights} on {split.lower()}")
        # The sorted sizes can be long (k in the thousands): results.json keeps them, the returned summary does not.
        del result["details"]
        for row in rows:
            logger.info("cluster_analysis %s %s k=%s: tau %.3f, purity %s", row["layer"], row["clustering"], row["k"],
                        row["tau"], f"{row['purity']:.3f}" if "purity" in row else "–")
    return du.broadcast_object(result)
