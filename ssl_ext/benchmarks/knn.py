"""``knn`` engine: weighted k-nearest-neighbour classification of cached features.

The protocol of Wu et al. 2018 ("Unsupervised Feature Learning via
Non-Parametric Instance Discrimination", arXiv:1805.01978) as used by DINO
(Caron et al. 2021, arXiv:2104.14294): features are L2-normalized, the ``k``
training features with the highest cosine similarity vote for their labels with
weight ``exp(similarity / T)`` (T = 0.07), and the class with the largest total
wins. One faiss search for ``max(K)`` neighbours serves every ``k`` in
``BENCHMARK.KNN.K`` (neighbours come back sorted by similarity, so the first
``k`` of them are the k nearest). The exact inner-product index
(``faiss.IndexFlatIP``) runs on the GPU when faiss has one
(``BENCHMARK.KNN.FAISS_DEVICE``), else on the CPU.

The reported ``k`` is chosen on a seeded holdout of train (queries: the held-out
images; database: the rest), never on val (``BENCHMARK.SELECT_ON``,
``ssl_ext.benchmarks.selection``); its row comes first, followed by one row per
fixed ``k`` for reference.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from registry import register_engine
from ssl_ext.benchmarks import feature_store
from ssl_ext.benchmarks.extraction import ensure_features
from ssl_ext.benchmarks.metrics import accuracy_percent, classification_metrics, topk_correct
from ssl_ext.benchmarks.results import output_dir, write_results
from ssl_ext.benchmarks.selection import LABELS, method_label, selection_settings, stratified_holdout
from ssl_ext.utils import distributed as du

logger = logging.getLogger(__name__)


def faiss_uses_gpu(device: str) -> bool:
    """Resolve ``auto | cpu | cuda`` against what the installed faiss offers."""
    import faiss

    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"config.BENCHMARK.KNN.FAISS_DEVICE must be auto, cpu or cuda, got {device!r}")
    has_gpu = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    if device == "cuda" and not has_gpu:
        raise RuntimeError(
            "config.BENCHMARK.KNN.FAISS_DEVICE=cuda but this faiss has no GPU support (install faiss-gpu: "
            "pip install ssl_ext[gpu]) or no GPU is visible; use auto or cpu."
        )
    return has_gpu and device != "cpu"


def nearest_neighbours(
    train: torch.Tensor, queries: torch.Tensor, kmax: int, use_gpu: bool = False, query_batch_size: int = 4096
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Exact top-``kmax`` inner-product neighbours: (similarities, indices), each (Nq, kmax), sorted descending."""
    import faiss

    # faiss reads host arrays, also for its GPU index: features kept on the GPU come over first.
    database = np.ascontiguousarray(train.detach().cpu().numpy(), dtype=np.float32)
    index = faiss.IndexFlatIP(database.shape[1])
    if use_gpu:
        resources = faiss.StandardGpuResources()
        index = faiss.index_cpu_to_gpu(resources, torch.cuda.current_device() if torch.cuda.is_available() else 0, index)
    index.add(database)
    sims, ids = [], []
    for start in range(0, queries.shape[0], query_batch_size):
        block = np.ascontiguousarray(queries[start : start + query_batch_size].detach().cpu().numpy(), dtype=np.float32)
        s, i = index.search(block, kmax)
        sims.append(torch.from_numpy(s))
        ids.append(torch.from_numpy(i.astype(np.int64)))
    return torch.cat(sims), torch.cat(ids)


def weighted_votes(
    neighbour_sims: torch.Tensor, neighbour_labels: torch.Tensor, k: int, temperature: float, num_classes: int
) -> torch.Tensor:
    """Class scores (Nq, C): sum over the first ``k`` neighbours of ``exp(sim / T)`` into each one's class.

    The scores live where the similarities do (a brute-force search on the GPU votes on the GPU).
    """
    weights = (neighbour_sims[:, :k] / temperature).exp()
    votes = weights.new_zeros(neighbour_sims.shape[0], num_classes)
    return votes.scatter_add_(1, neighbour_labels[:, :k], weights)


def knn_scores(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    query_features: torch.Tensor,
    ks: Sequence[int],
    temperature: float,
    num_classes: int,
    use_gpu: bool = False,
    query_batch_size: int = 4096,
) -> Dict[int, torch.Tensor]:
    """Weighted-kNN class scores of the queries for every ``k`` (see the module docstring)."""
    if temperature <= 0:
        raise ValueError(f"config.BENCHMARK.KNN.TEMPERATURE must be positive, got {temperature}")
    if not ks or any(int(k) < 1 for k in ks):
        raise ValueError(f"config.BENCHMARK.KNN.K must be a non-empty list of positive ints, got {list(ks)}")
    train = F.normalize(train_features.float(), dim=1)
    queries = F.normalize(query_features.float(), dim=1)
    kmax = min(max(int(k) for k in ks), train.shape[0])
    sims, ids = nearest_neighbours(train, queries, kmax, use_gpu, query_batch_size)
    neighbour_labels = train_labels.long().to(ids.device)[ids]
    return {int(k): weighted_votes(sims, neighbour_labels, min(int(k), kmax), temperature, num_classes) for k in ks}


def _evaluate_layer(cfg: DictConfig, features: Dict[str, Any], layer: str) -> Tuple[List[Dict[str, Any]], Dict[int, float]]:
    """Rows (the chosen ``k`` first, per ``BENCHMARK.SELECT_ON``, then one per fixed ``k``) and each k's selection score."""
    knn_cfg = cfg.config.BENCHMARK.KNN
    train, val, num_classes, groups = feature_store.load_train_val(cfg, features, layer)
    select_on, fraction = selection_settings(cfg)
    ks = [int(k) for k in knn_cfg.K]
    settings = dict(
        ks=ks, temperature=float(knn_cfg.TEMPERATURE), num_classes=num_classes,
        use_gpu=faiss_uses_gpu(str(knn_cfg.FAISS_DEVICE)), query_batch_size=int(knn_cfg.QUERY_BATCH_SIZE),
    )
    started = time.time()
    train_x, train_y = torch.from_numpy(train.features), torch.from_numpy(train.labels)
    scores = knn_scores(train_x, train_y, torch.from_numpy(val.features), **settings)
    labels = torch.from_numpy(val.labels)
    per_k = {k: classification_metrics(s, labels, groups) for k, s in scores.items()}
    if select_on == "val":
        selection = {k: m["top1"] for k, m in per_k.items()}
    else:
        kept, held = (torch.from_numpy(i) for i in stratified_holdout(train.labels, fraction, int(cfg.config.SEED_VALUE)))
        held_scores = knn_scores(train_x[kept], train_y[kept], train_x[held], **settings)
        selection = {k: accuracy_percent(topk_correct(s, train_y[held], (1,))[1]) for k, s in held_scores.items()}
    chosen = max(ks, key=lambda k: (selection[k], -k))  # ties go to the smaller k
    seconds = round(time.time() - started, 3)
    score_name = "val_top1" if select_on == "val" else "holdout_top1"
    chosen_row = {
        "layer": layer, "method": method_label("knn", select_on), "k": chosen, **per_k[chosen],
        "selected_on": LABELS[select_on], score_name: selection[chosen], "seconds": seconds,
    }
    fixed = [{"layer": layer, "method": "knn (fixed k)", "k": k, **per_k[k], "seconds": seconds} for k in ks]
    return [chosen_row] + (fixed if len(ks) > 1 else []), selection


@register_engine("knn")
def knn_engine(cfg: DictConfig) -> Dict[str, Any]:
    features = ensure_features(cfg)
    result: Dict[str, Any] = {}
    if du.is_primary():
        rows, selection = [], {}
        for layer in features["layers"]:
            layer_rows, selection[layer] = _evaluate_layer(cfg, features, layer)
            rows += layer_rows
        result = {
            "engine": "knn",
            "temperature": float(cfg.config.BENCHMARK.KNN.TEMPERATURE),
            "features_dir": features["features_dir"],
            "rows": rows,
            "selected_on": LABELS[selection_settings(cfg)[0]],
            "selection_top1": selection,
        }
        result["files"] = write_results(output_dir(cfg, "knn"), result, "Weighted kNN (top-1 / top-5 %)")
        for row in rows:
            logger.info("kNN %s (%s) k=%d: top-1 %.2f%%", row["layer"], row["method"], row["k"], row["top1"])
    return du.broadcast_object(result)
