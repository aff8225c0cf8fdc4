"""Power-law fits of sorted cluster sizes: known exponents are recovered, MLE is the KL-optimal tau."""
import math

import numpy as np
import pytest

from ssl_ext.analysis.power_law import (
    MAX_TAU, fit_exponent, fit_exponent_least_squares, fit_exponent_mle, kl_divergence, power_law_distribution,
    size_distribution_summary, uniform_null_exponents,
)


def test_power_law_distribution_is_normalized_zipf():
    pi = power_law_distribution(5, 0.5)
    assert pi.sum() == pytest.approx(1.0)
    # pi_r / pi_1 = r^(-tau)
    np.testing.assert_allclose(pi / pi[0], np.arange(1, 6) ** -0.5)
    np.testing.assert_allclose(power_law_distribution(4, 0.0), np.full(4, 0.25))


@pytest.mark.parametrize("tau", [0.1, 0.25, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("method", ["mle", "least_squares"])
def test_exact_power_law_sizes_give_their_exponent(tau, method):
    sizes = np.round(1_000_000 * power_law_distribution(64, tau))
    rng = np.random.default_rng(0)
    # Order must not matter: the fit sorts.
    assert fit_exponent(rng.permutation(sizes), method) == pytest.approx(tau, abs=2e-3)


@pytest.mark.parametrize("tau", [0.25, 1.0])
def test_sampled_power_law_sizes_give_their_exponent_within_tolerance(tau):
    """20,000 samples over 50 ranks: the MLE is within 0.05 of the generating tau (sorting noise included)."""
    rng = np.random.default_rng(1)
    sizes = rng.multinomial(20_000, power_law_distribution(50, tau))
    assert fit_exponent_mle(sizes) == pytest.approx(tau, abs=0.05)


def test_mle_is_the_kl_minimizing_exponent_on_a_grid():
    sizes = np.array([50, 31, 30, 12, 9, 5, 2, 1, 0, 0])
    fractions = sizes / sizes.sum()
    grid = np.linspace(0, 5, 50_001)
    kls = [kl_divergence(fractions, power_law_distribution(sizes.size, t)) for t in grid]
    assert fit_exponent_mle(sizes) == pytest.approx(grid[int(np.argmin(kls))], abs=2e-4)


def test_least_squares_is_the_log_log_line_over_non_empty_clusters():
    sizes = np.array([8.0, 4.0, 2.0, 0.0])  # ranks 1..3: log2 sizes 3, 2, 1 against log ranks 0, log 2, log 3
    x, y = np.log([1, 2, 3]), np.log([8, 4, 2])
    slope = np.sum((x - x.mean()) * (y - y.mean())) / np.sum((x - x.mean()) ** 2)
    assert fit_exponent_least_squares(sizes) == pytest.approx(-slope)


def test_uniform_sizes_have_exponent_zero_and_extremes_are_capped():
    assert fit_exponent_mle([7, 7, 7, 7]) == 0.0
    assert fit_exponent_mle([100, 0, 0]) == MAX_TAU
    summary = size_distribution_summary([5, 5, 5, 5], null_draws=0)
    assert summary["tau"] == 0.0 and summary["kl_uniform"] == pytest.approx(0.0, abs=1e-12)
    assert summary["normalized_entropy"] == pytest.approx(1.0)


def test_summary_of_known_sizes():
    summary = size_distribution_summary([10, 0, 30, 60], null_draws=0, prior=np.array([0.1, 0.2, 0.3, 0.4]))
    assert summary["sorted_sizes"] == [60.0, 30.0, 10.0, 0.0]
    assert summary["empty_clusters"] == 1 and summary["largest_fraction"] == pytest.approx(0.6)
    assert summary["imbalance_ratio"] == pytest.approx(6.0)
    p = np.array([0.6, 0.3, 0.1])
    assert summary["kl_uniform"] == pytest.approx(float(np.sum(p * np.log(p * 4))))
    # The prior is sorted descending before the comparison.
    assert summary["kl_prior"] == pytest.approx(float(np.sum(p * np.log(p / np.array([0.4, 0.3, 0.2])))))
    # Uniform is tau = 0 of the power-law family, so the fitted power law is never worse.
    assert summary["kl_power_law"] <= summary["kl_uniform"]


def test_uniform_null_shrinks_with_more_samples():
    small = uniform_null_exponents(200, 20, draws=100, seed=0)
    large = uniform_null_exponents(200_000, 20, draws=100, seed=0)
    assert np.all(small >= 0) and small.mean() > 10 * large.mean()
    # Sorting alone produces a positive exponent for uniform clusters.
    assert small.mean() > 0.05


@pytest.mark.parametrize("bad", [[1], [1, -1], [0, 0], [1, math.nan]])
def test_bad_sizes_are_rejected_with_a_clear_message(bad):
    with pytest.raises(ValueError, match="cluster sizes|at least 2|all cluster sizes are zero"):
        size_distribution_summary(bad)
    with pytest.raises(ValueError, match="fit method"):
        fit_exponent([1, 2], "median")
