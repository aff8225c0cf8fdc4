"""faiss k-means on synthetic features with known cluster sizes; purity and NMI against hand-computed values."""
import numpy as np
import pytest

from ssl_ext.analysis.cluster_analysis import analyze_features
from ssl_ext.analysis.kmeans import contingency, normalized_mutual_information, purity, run_kmeans
from ssl_ext.analysis.power_law import power_law_distribution


def blobs(sizes, dim=16, noise=0.05, seed=0):
    """Tight blobs around orthogonal directions (separated under cosine and L2); label = blob."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    centers = 3.0 * np.eye(dim)[: len(sizes)]
    features = centers[labels] + noise * rng.standard_normal((labels.size, dim))
    order = rng.permutation(labels.size)
    return features[order].astype(np.float32), labels[order]


POWER_LAW_SIZES = np.round(1000 * power_law_distribution(10, 1.0) / power_law_distribution(10, 1.0)[0]).astype(int)


@pytest.mark.parametrize("spherical", [True, False])
def test_kmeans_recovers_power_law_cluster_sizes_and_exponent(spherical):
    """Sizes 1000/r for r = 1..10 (tau = 1): exact sizes back, tau within 0.01, purity = NMI = 1."""
    features, labels = blobs(POWER_LAW_SIZES)
    result = run_kmeans(features, 10, niter=20, nredo=2, spherical=spherical, seed=0)
    assert sorted(result.sizes.tolist(), reverse=True) == POWER_LAW_SIZES.tolist()
    assert purity(result.assignments, labels) == 1.0
    assert normalized_mutual_information(result.assignments, labels) == pytest.approx(1.0)
    analysis = analyze_features(features, labels, [10, 20], niter=20, nredo=2, spherical=spherical, null_draws=50)
    kmeans_10 = analysis["details"]["kmeans"][10]
    assert kmeans_10["tau_mle"] == pytest.approx(1.0, abs=0.01)
    assert kmeans_10["tau_mle"] > kmeans_10["uniform_null_tau_p95"]
    # The label histogram is the same distribution: same exponent.
    assert analysis["details"]["labels"]["tau_mle"] == pytest.approx(kmeans_10["tau_mle"])
    # k = 2 x classes splits clusters but keeps them pure.
    assert analysis["details"]["kmeans"][20]["purity"] == 1.0
    assert [r["clustering"] for r in analysis["rows"]] == ["labels", "kmeans", "kmeans"]


def test_kmeans_on_equal_blobs_is_uniform():
    features, labels = blobs([300] * 8, seed=3)
    result = run_kmeans(features, 8, niter=20, nredo=1, seed=1)
    assert result.sizes.tolist() == [300] * 8
    analysis = analyze_features(features, labels, [8], niter=20, nredo=1, null_draws=0)
    assert analysis["details"]["kmeans"][8]["tau_mle"] == 0.0


def test_kmeans_is_deterministic_for_a_seed():
    features, _ = blobs([50, 40, 30], noise=1.0, seed=5)
    a, b = run_kmeans(features, 3, seed=7), run_kmeans(features, 3, seed=7)
    np.testing.assert_array_equal(a.assignments, b.assignments)
    # The objective is the sum of squared distances of the normalized points to their centroids.
    x = features / np.linalg.norm(features, axis=1, keepdims=True)
    expected = ((x - a.centroids[a.assignments]) ** 2).sum()
    assert a.objective == pytest.approx(expected, rel=1e-4)


def test_purity_and_nmi_by_hand():
    assignments = np.array([0, 0, 1, 1, 1, 2])
    labels = np.array([0, 1, 1, 1, 1, 2])
    np.testing.assert_array_equal(contingency(assignments, labels), [[1, 1, 0], [0, 3, 0], [0, 0, 1]])
    assert purity(assignments, labels) == pytest.approx(5 / 6)
    # Straightforward NMI: MI / mean(H(clusters), H(labels)).
    n = 6
    joint = contingency(assignments, labels) / n
    pc, pl = joint.sum(1), joint.sum(0)
    nz = joint > 0
    mi = np.sum(joint[nz] * np.log(joint[nz] / np.outer(pc, pl)[nz]))
    h = lambda p: -np.sum(p[p > 0] * np.log(p[p > 0]))  # noqa: E731
    assert normalized_mutual_information(assignments, labels) == pytest.approx(mi / ((h(pc) + h(pl)) / 2))
    # Relabelling clusters changes nothing.
    assert purity(2 - assignments, labels) == purity(assignments, labels)


def test_bad_inputs_name_the_argument():
    features, _ = blobs([5, 5])
    with pytest.raises(ValueError, match="num_clusters=11 exceeds"):
        run_kmeans(features, 11)
    with pytest.raises(ValueError, match="niter"):
        run_kmeans(features, 2, niter=0)
    bad = features.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        run_kmeans(bad, 2)
    with pytest.raises(ValueError, match="same length"):
        purity(np.zeros(3, dtype=int), np.zeros(4, dtype=int))


def test_kmeans_plus_plus_seeding_finds_small_clusters_that_random_seeding_merges():
    """Sizes 2000, 1000, ..., 15 (tau ~ 1.7 over 8 blobs): k-means++ recovers every blob, faiss's uniform seeding
    puts several seeds in the big blobs and merges small ones, shrinking the apparent number of clusters."""
    sizes = [2000, 1000, 400, 150, 80, 40, 20, 15]
    features, labels = blobs(sizes, seed=2)
    plus = run_kmeans(features, 8, niter=20, nredo=1, seed=0, init="kmeans++")
    assert sorted(plus.sizes.tolist(), reverse=True) == sizes
    merged = [run_kmeans(features, 8, niter=20, nredo=1, seed=s, init="random").sizes for s in range(5)]
    assert any(sorted(m.tolist(), reverse=True) != sizes for m in merged)
    with pytest.raises(ValueError, match="init must be one of"):
        run_kmeans(features, 8, init="forgy")
