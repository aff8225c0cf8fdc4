"""k-means with faiss on extracted features, and how well its clusters agree with the labels.

The hidden-uniform-prior paper (Assran et al., ICLR 2023, arXiv:2210.07277) reads the
cluster prior of a representation off the sizes of its k-means clusters. Lloyd's
k-means has a uniform tendency of its own (Xiong, Wu & Chen, "K-means clustering
versus validation measures", KDD 2009), so sizes are best compared *between*
representations clustered the same way, and against the label histogram.

Choices (all parameters): features are L2-normalized and clustered with spherical
k-means (``spherical=True``) by default, because SSL features are compared by cosine
similarity everywhere else (kNN, the losses). Each of ``nredo`` restarts is seeded
with k-means++ (Arthur & Vassilvitskii, SODA 2007; ``init="kmeans++"``) rather than
faiss's uniformly drawn points (``init="random"``): a uniform draw easily puts two
seeds in one large cluster and none in a small one, and Lloyd's iterations never
recover from that, which would bias the very size distribution being measured toward
fewer, larger clusters. k-means++ costs O(N k D) on the CPU, so with k in the
thousands on hundreds of thousands of samples (iNat18) ``random`` is the practical
choice. The restart with the lowest sum of squared distances is kept. faiss clusters
on the GPU when it sees one. faiss's subsampling of the
training points (256 per centroid) is switched off so every sample takes part.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import numpy as np


INITS = ("kmeans++", "random")


@dataclass
class KMeansResult:
    assignments: np.ndarray  # (N,) cluster of each sample
    centroids: np.ndarray  # (k, D)
    objective: float  # sum of squared distances of the (normalized, when spherical) samples to their centroid

    @property
    def sizes(self) -> np.ndarray:
        return np.bincount(self.assignments, minlength=self.centroids.shape[0])


def l2_normalize(features: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def kmeans_plus_plus(x: np.ndarray, num_clusters: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeds: each next seed drawn with probability ∝ squared distance to the nearest seed so far."""
    seeds = np.empty((num_clusters, x.shape[1]), dtype=np.float32)
    seeds[0] = x[rng.integers(x.shape[0])]
    squared_norms = np.einsum("ij,ij->i", x, x)
    nearest = np.maximum(squared_norms - 2 * x @ seeds[0] + seeds[0] @ seeds[0], 0)
    for i in range(1, num_clusters):
        total = nearest.sum()
        # All remaining points coincide with a seed: any point will do.
        pick = rng.integers(x.shape[0]) if total <= 0 else rng.choice(x.shape[0], p=nearest / total)
        seeds[i] = x[pick]
        nearest = np.minimum(nearest, np.maximum(squared_norms - 2 * x @ seeds[i] + seeds[i] @ seeds[i], 0))
    return seeds


def run_kmeans(
    features: np.ndarray,
    num_clusters: int,
    niter: int = 50,
    nredo: int = 3,
    spherical: bool = True,
    seed: int = 0,
    init: str = "kmeans++",
) -> KMeansResult:
    """Cluster ``features`` (N, D) into ``num_clusters`` with faiss; see the module docstring."""
    import faiss

    if init not in INITS:
        raise ValueError(f"run_kmeans: init must be one of {list(INITS)}, got {init!r}")

    features = np.asarray(features)
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"run_kmeans: features must be a non-empty (N, D) array, got shape {features.shape}")
    if not np.all(np.isfinite(features)):
        raise ValueError("run_kmeans: features contain NaN or Inf; the checkpoint or the extraction is broken")
    for name, value, minimum in (("num_clusters", num_clusters, 2), ("niter", niter, 1), ("nredo", nredo, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"run_kmeans: {name} must be an int >= {minimum}, got {value!r}")
    if num_clusters > features.shape[0]:
        raise ValueError(f"run_kmeans: num_clusters={num_clusters} exceeds the number of samples ({features.shape[0]})")
    x = np.ascontiguousarray(l2_normalize(features) if spherical else features, dtype=np.float32)
    rng = np.random.default_rng(seed)
    best: KMeansResult = None  # type: ignore[assignment]
    for restart in range(int(nredo)):
        kmeans = faiss.Kmeans(
            x.shape[1], int(num_clusters), niter=int(niter), nredo=1, spherical=bool(spherical),
            seed=int(seed) + restart, min_points_per_centroid=1,
            max_points_per_centroid=-(-x.shape[0] // int(num_clusters)) + 1, verbose=False,
            gpu=faiss.get_num_gpus() > 0,
        )
        seeds = kmeans_plus_plus(x, int(num_clusters), rng) if init == "kmeans++" else None
        kmeans.train(x, init_centroids=seeds)
        centroids = np.ascontiguousarray(kmeans.centroids, dtype=np.float32)
        # faiss's own index holds the centroids of the last assignment step, not the final update: search afresh.
        index = faiss.IndexFlatL2(x.shape[1])
        index.add(centroids)
        distances, assignments = index.search(x, 1)
        objective = float(distances.astype(np.float64).sum())
        if best is None or objective < best.objective:
            best = KMeansResult(assignments.ravel().astype(np.int64), centroids, objective)
    return best


def contingency(assignments: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(clusters, classes) matrix of sample counts."""
    assignments, labels = np.asarray(assignments, dtype=np.int64), np.asarray(labels, dtype=np.int64)
    if assignments.shape != labels.shape or assignments.ndim != 1:
        raise ValueError(f"assignments {assignments.shape} and labels {labels.shape} must be 1-D of the same length")
    table = np.zeros((int(assignments.max()) + 1, int(labels.max()) + 1), dtype=np.int64)
    np.add.at(table, (assignments, labels), 1)
    return table


def purity(assignments: np.ndarray, labels: np.ndarray) -> float:
    """Share of samples whose cluster's majority label is their own label."""
    table = contingency(assignments, labels)
    return float(table.max(axis=1).sum() / table.sum())


def normalized_mutual_information(assignments: np.ndarray, labels: np.ndarray) -> float:
    """NMI with the arithmetic-mean normalization (scikit-learn's default)."""
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(np.asarray(labels), np.asarray(assignments)))


def agreement(assignments: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
    return {"purity": purity(assignments, labels), "nmi": normalized_mutual_information(assignments, labels)}
