"""uniform_class_resampling and power_law_class: per-class frequencies follow the target distribution.

Statistical tolerance. Per epoch, class c gets floor(L q_c) or ceil(L q_c) draws
(L draws per epoch), so its count is within 1 of L q_c *deterministically*; the
mean over E epochs is a mean of E independent roundings (standard deviation at
most 1 / (2 sqrt(E))), asserted within 5 of those. Both bounds are checked.
"""
import numpy as np
import pytest

from sampler_testing import LabelsOnly, all_ranks, counts_to_labels, global_batches

COUNTS = [300, 150, 80, 40, 20, 10, 5, 3, 2, 1]
LONG_TAIL = LabelsOnly(counts_to_labels(COUNTS))
BALANCED = LabelsOnly(np.arange(400) % 10)


def check_frequencies(ranks, target, epochs=100):
    targets = ranks[0].dataset.targets
    totals = np.zeros(len(target))
    draws = None
    for epoch in range(epochs):
        labels = targets[global_batches(ranks, epoch)].ravel()
        draws = labels.size
        counts = np.bincount(labels, minlength=len(target))
        assert np.all(np.abs(counts - draws * target) < 1 + 1e-9)
        totals += counts
    assert np.all(np.abs(totals / epochs - draws * target) <= 5 / (2 * np.sqrt(epochs)))


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_uniform_class_resampling_is_uniform_over_classes_on_a_long_tail(world_size):
    ranks = all_ranks("uniform_class_resampling", LONG_TAIL, 6, world_size)
    np.testing.assert_allclose(ranks[0].target_class_frequencies, np.full(10, 0.1))
    check_frequencies(ranks, np.full(10, 0.1))


def test_uniform_class_resampling_skips_empty_classes():
    dataset = LabelsOnly(np.array([0] * 30 + [2] * 10), num_classes=4)
    sampler = all_ranks("uniform_class_resampling", dataset, 4, 1)[0]
    np.testing.assert_allclose(sampler.target_class_frequencies, [0.5, 0, 0.5, 0])
    check_frequencies([sampler], np.array([0.5, 0, 0.5, 0]), epochs=20)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0, 2.0])
def test_power_law_makes_a_balanced_dataset_long_tailed(alpha):
    ranks = all_ranks("power_law_class", BALANCED, 8, 2, alpha=alpha)
    ranking = np.arange(1, 11, dtype=float)
    target = ranking**-alpha / (ranking**-alpha).sum()  # rank_by=frequency on equal sizes is label order
    np.testing.assert_allclose(ranks[0].target_class_frequencies, target)
    check_frequencies(ranks, target)


def test_power_law_rankings():
    shuffled = LabelsOnly(counts_to_labels([5, 50, 20, 10]))
    by_frequency = all_ranks("power_law_class", shuffled, 4, 1, alpha=1.0)[0]
    assert by_frequency.class_ranking.tolist() == [1, 2, 3, 0]
    assert by_frequency.target_class_frequencies[1] == pytest.approx(1 / (1 + 1 / 2 + 1 / 3 + 1 / 4))
    assert all_ranks("power_law_class", shuffled, 4, 1, rank_by="index")[0].class_ranking.tolist() == [0, 1, 2, 3]
    random_a = all_ranks("power_law_class", BALANCED, 4, 1, rank_by="random", seed=7)[0].class_ranking
    random_b = all_ranks("power_law_class", BALANCED, 4, 1, rank_by="random", seed=7)[0].class_ranking
    assert sorted(random_a.tolist()) == list(range(10)) and np.array_equal(random_a, random_b)


def test_epoch_length_options():
    assert len(all_ranks("uniform_class_resampling", LONG_TAIL, 8, 2)[0]) == (611 // 16) * 8
    assert len(all_ranks("uniform_class_resampling", LONG_TAIL, 8, 2, drop_last=False)[0]) == 306
    assert len(all_ranks("power_law_class", LONG_TAIL, 8, 2, num_batches_per_epoch=3)[0]) == 24


@pytest.mark.parametrize("params,match", [({"alpha": -1.0}, "alpha"), ({"rank_by": "size"}, "rank_by"),
                                          ({"num_batches_per_epoch": -2}, "num_batches_per_epoch")])
def test_power_law_rejects_bad_params(params, match):
    with pytest.raises(ValueError, match=match):
        all_ranks("power_law_class", LONG_TAIL, 8, 1, **params)
