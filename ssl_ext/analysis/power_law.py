"""Is a sorted cluster-size distribution uniform or a power law, and with which exponent?

Assran et al., "The Hidden Uniform Cluster Prior in Self-Supervised Learning",
ICLR 2023, arXiv:2210.07277, compare the sorted cluster sizes of learned features
(and the sorted prototype usage of MSN/PMSN) with a uniform distribution and with
the power law that PMSN's prior uses, ``pi_r ∝ r^(-tau)`` over ranks ``r = 1..k``.
This module measures that comparison.

Parametrization: the *rank-size* (Zipf) form, sizes sorted in decreasing order and
``s_r ∝ r^(-tau)``. It is the form of PMSN's ``power_law`` prior, so a fitted ``tau``
reads directly against the prior's ``tau``; uniform clusters are ``tau = 0``.

Fitting (both are reported; ``mle`` is the default headline):

* ``mle`` — maximum likelihood of the rank of each sample under the truncated Zipf
  law on ``1..k``: ``tau* = argmin_tau KL(s / N ‖ pi(tau))``, the same divergence
  PMSN's regularizer minimizes over p̄. The negative log-likelihood is convex in
  ``tau`` (its log-partition is convex), and its stationarity condition is moment
  matching of the mean log-rank, ``E_data[log r] = E_pi(tau)[log r]``, which we solve
  with Brent's method. Empty clusters count (as rank positions with no mass), every
  sample weighs the same, and ``tau`` is identifiable for any sizes; ``tau`` is
  capped at ``MAX_TAU`` when nearly all samples sit in the first cluster.
* ``least_squares`` — ordinary least squares of ``log s_r`` on ``log r`` over the
  non-empty clusters (the classic log-log plot fit).
  Every cluster weighs the same, so the few-sample tail dominates, and empty clusters
  are dropped; kept for comparison with plots and earlier work.

Sorting makes even sizes drawn from *uniform* clusters look like a weak power law
(the largest of k multinomial counts exceeds N/k). ``uniform_null_exponents`` gives
the ``tau`` that sampling noise alone produces, so a fitted exponent can be judged
against it rather than against zero; ``uniform_noise_floor`` is its 95th percentile.
The prior-monitor training hook reports the same MLE ``tau`` and floor
(``ssl_ext.analysis.prototype_usage.usage_statistics``).
"""
from __future__ import annotations

import functools
import math
from typing import Dict, Optional

import numpy as np

FIT_METHODS = ("mle", "least_squares")
MAX_TAU = 20.0


def _check_sizes(sizes, owner: str) -> np.ndarray:
    values = np.asarray(sizes, dtype=np.float64).ravel()
    if values.size < 2:
        raise ValueError(f"{owner}: need the sizes of at least 2 clusters, got {values.size}")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"{owner}: cluster sizes must be finite and >= 0, got min {values.min()!r}")
    if values.sum() <= 0:
        raise ValueError(f"{owner}: all cluster sizes are zero")
    return values


def sort_descending(sizes) -> np.ndarray:
    return np.sort(np.asarray(sizes, dtype=np.float64).ravel())[::-1]


def power_law_distribution(num_clusters: int, tau: float) -> np.ndarray:
    """``pi_r = r^(-tau) / sum_j j^(-tau)`` for ranks ``r = 1..num_clusters``: PMSN's ``power_law`` prior itself.

    One formula for the prior a PMSN run trains with and the curve its clusters are
    compared with: this returns the registered prior's values (float64) as a numpy array.
    """
    from ssl_ext.losses.priors.power_law import power_law_prior

    if isinstance(num_clusters, bool) or not isinstance(num_clusters, (int, np.integer)) or num_clusters < 1:
        raise ValueError(f"power_law_distribution: num_clusters must be an int >= 1, got {num_clusters!r}")
    if not (math.isfinite(tau) and tau >= 0):
        raise ValueError(f"power_law_distribution: tau must be finite and >= 0, got {tau!r}")
    return power_law_prior(int(num_clusters), float(tau)).numpy()


def _mean_log_rank(num_clusters: int, tau: float) -> float:
    log_ranks = np.log(np.arange(1, num_clusters + 1, dtype=np.float64))
    return float(power_law_distribution(num_clusters, tau) @ log_ranks)


def fit_exponent_mle(sizes) -> float:
    """Maximum-likelihood ``tau`` of the sorted sizes under the truncated Zipf law (see the module docstring)."""
    from scipy.optimize import brentq

    sorted_sizes = sort_descending(_check_sizes(sizes, "fit_exponent_mle"))
    k = sorted_sizes.size
    observed = float(sorted_sizes @ np.log(np.arange(1, k + 1)) / sorted_sizes.sum())
    # E_pi(tau)[log r] decreases from the uniform value (tau = 0) toward 0; sorted data sit inside that range.
    gap = lambda tau: _mean_log_rank(k, tau) - observed  # noqa: E731
    if gap(0.0) <= 0:
        return 0.0
    if gap(MAX_TAU) >= 0:
        return MAX_TAU
    return float(brentq(gap, 0.0, MAX_TAU, xtol=1e-10))


def fit_exponent_least_squares(sizes) -> float:
    """``tau`` of the least-squares line ``log s_r = c - tau log r`` over the non-empty clusters (NaN if < 2)."""
    sorted_sizes = sort_descending(_check_sizes(sizes, "fit_exponent_least_squares"))
    ranks = np.arange(1, sorted_sizes.size + 1, dtype=np.float64)
    used = sorted_sizes > 0
    if used.sum() < 2:
        return float("nan")
    return float(-np.polyfit(np.log(ranks[used]), np.log(sorted_sizes[used]), 1)[0])


def fit_exponent(sizes, method: str = "mle") -> float:
    if method not in FIT_METHODS:
        raise ValueError(f"power-law fit method must be one of {list(FIT_METHODS)}, got {method!r}")
    return fit_exponent_mle(sizes) if method == "mle" else fit_exponent_least_squares(sizes)


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p ‖ q) in nats for probability vectors (terms with p = 0 contribute 0)."""
    positive = p > 0
    return float(np.sum(p[positive] * (np.log(p[positive]) - np.log(q[positive]))))


def uniform_null_exponents(
    num_samples: int, num_clusters: int, draws: int = 200, seed: int = 0, method: str = "mle"
) -> np.ndarray:
    """Exponents fitted to sorted multinomial(num_samples, uniform over num_clusters) sizes, one per draw."""
    if draws < 1:
        raise ValueError(f"uniform_null_exponents: draws must be >= 1, got {draws!r}")
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(int(num_samples), np.full(num_clusters, 1.0 / num_clusters), size=draws)
    return np.array([fit_exponent(row, method) for row in counts])


@functools.lru_cache(maxsize=64)
def uniform_noise_floor(num_samples: int, num_clusters: int, draws: int = 100, seed: int = 0, quantile: float = 0.95) -> float:
    """The ``quantile`` of the MLE ``tau`` that sorting alone gives ``num_samples`` uniform cluster draws.

    A fitted exponent at or below this floor is indistinguishable from uniform clusters
    at that sample size (see the module docstring). Deterministic in its arguments (own
    generator, never the global one) and cached, so a training hook can ask every step.
    """
    if num_samples < 1 or num_clusters < 2:
        raise ValueError(f"uniform_noise_floor: need num_samples >= 1 and num_clusters >= 2, got {num_samples}, {num_clusters}")
    return float(np.quantile(uniform_null_exponents(num_samples, num_clusters, draws, seed, "mle"), quantile))


def size_distribution_summary(
    sizes,
    method: str = "mle",
    null_draws: int = 200,
    seed: int = 0,
    prior: Optional[np.ndarray] = None,
    num_samples: Optional[int] = None,
) -> Dict[str, object]:
    """Everything the report and the plots need about one set of cluster sizes (or masses).

    Sizes may be counts or probability masses (prototype usage). ``num_samples``, the
    number of samples the sizes describe (used for the uniform null), defaults to the
    rounded sum, so pass it for masses. ``prior`` (e.g. a PMSN prior) adds
    ``kl_prior`` = KL(sorted sizes ‖ sorted prior).
    """
    if method not in FIT_METHODS:
        raise ValueError(f"power-law fit method must be one of {list(FIT_METHODS)}, got {method!r}")
    values = _check_sizes(sizes, "size_distribution_summary")
    sorted_sizes = sort_descending(values)
    k = sorted_sizes.size
    fractions = sorted_sizes / sorted_sizes.sum()
    tau_mle = fit_exponent_mle(sorted_sizes)
    tau_lsq = fit_exponent_least_squares(sorted_sizes)
    tau = tau_mle if method == "mle" else tau_lsq
    positive = fractions[fractions > 0]
    entropy = float(-(positive * np.log(positive)).sum())
    summary: Dict[str, object] = {
        "num_clusters": k,
        "total": float(sorted_sizes.sum()),
        "empty_clusters": int((sorted_sizes == 0).sum()),
        "largest_fraction": float(fractions[0]),
        "smallest_fraction": float(fractions[-1]),
        "imbalance_ratio": float(positive[0] / positive[-1]),
        "normalized_entropy": entropy / math.log(k),
        "fit_method": method,
        "tau": tau,
        "tau_mle": tau_mle,
        "tau_least_squares": tau_lsq,
        "kl_uniform": kl_divergence(fractions, np.full(k, 1.0 / k)),
        "kl_power_law": kl_divergence(fractions, power_law_distribution(k, tau_mle)),
        "sorted_sizes": sorted_sizes.tolist(),
    }
    if null_draws > 0:
        samples = int(round(sorted_sizes.sum())) if num_samples is None else int(num_samples)
        null = uniform_null_exponents(max(samples, 1), k, null_draws, seed, method)
        summary["uniform_null_tau_mean"] = float(null.mean())
        summary["uniform_null_tau_p95"] = float(np.quantile(null, 0.95))
    if prior is not None:
        prior = np.asarray(prior, dtype=np.float64)
        if prior.shape != (k,):
            raise ValueError(f"size_distribution_summary: prior has shape {prior.shape}, expected ({k},)")
        summary["kl_prior"] = kl_divergence(fractions, sort_descending(prior) / prior.sum())
    return summary
