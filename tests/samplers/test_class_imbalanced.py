"""class_imbalanced: exactly K classes per global batch, natural class marginals, any K, any rank count.

Statistical tolerance. Per epoch, class c fills s_c slots of m = G/K images, with
s_c = floor(t_c) or ceil(t_c) for its target t_c = (slots per epoch) * p_c, so its
image count is within m of the target *deterministically*; over E epochs the mean
count is a mean of E independent roundings, whose standard deviation is at most
m / (2 sqrt(E)). We assert both: the hard per-epoch bound, and the E-epoch mean
within 5 of those standard deviations (a false alarm about once in 3.5 million).
"""
import warnings

import numpy as np
import pytest

from registry import build_sampler
from sampler_testing import LabelsOnly, all_ranks, counts_to_labels, global_batches

# 10 classes, 1..300 images: K=4 does not divide 10 (VISSL refuses); the tail is smaller than m (VISSL crashes).
COUNTS = [230, 220, 160, 120, 90, 60, 40, 20, 5, 1]
DATASET = LabelsOnly(counts_to_labels(COUNTS))


def class_sets(batches, targets):
    return [np.unique(targets[row]) for row in batches]


@pytest.mark.filterwarnings("ignore:.*too frequent to keep their marginal")  # large K caps the head classes
@pytest.mark.parametrize("world_size,batch_size,k", [(1, 16, 4), (2, 8, 4), (4, 4, 4), (3, 8, 6), (8, 2, 8), (2, 5, 10)])
def test_every_global_batch_has_exactly_k_classes_with_equal_shares(world_size, batch_size, k):
    targets = DATASET.targets
    ranks = all_ranks("class_imbalanced", DATASET, batch_size, world_size, classes_per_batch=k)
    for epoch in range(5):
        batches = global_batches(ranks, epoch)
        assert batches.shape[0] == len(targets) // (batch_size * world_size)
        for row in batches:
            classes, per_class = np.unique(targets[row], return_counts=True)
            assert classes.size == k
            assert np.all(per_class == batch_size * world_size // k)


@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_class_marginals_match_natural_frequencies(world_size):
    batch_size, k, epochs = 16 // world_size, 4, 200
    ranks = all_ranks("class_imbalanced", DATASET, batch_size, world_size, seed=1, classes_per_batch=k)
    m = 16 // k
    nb = len(DATASET) // 16
    natural = np.asarray(COUNTS) / sum(COUNTS)  # every class below 1/K: no capping
    assert natural.max() < 1 / k
    np.testing.assert_allclose(ranks[0].target_class_frequencies, natural)
    totals = np.zeros(10)
    for epoch in range(epochs):
        per_epoch = np.bincount(DATASET.targets[global_batches(ranks, epoch)].ravel(), minlength=10)
        assert np.all(np.abs(per_epoch - natural * nb * 16) < m)  # hard bound: less than one slot off
        totals += per_epoch
    mean_count = totals / epochs
    assert np.all(np.abs(mean_count - natural * nb * 16) <= 5 * m / (2 * np.sqrt(epochs)))


def test_shared_mode_gives_every_rank_all_k_classes_and_disjoint_images():
    # 8 balanced classes of 64: an epoch needs every image exactly once, so no repeats at all.
    dataset = LabelsOnly(np.arange(512) % 8)
    ranks = all_ranks("class_imbalanced", dataset, 8, 4, classes_per_batch=4)
    batches = global_batches(ranks, 0)
    assert np.unique(batches).size == batches.size == 512
    for row in batches:
        chunks = row.reshape(4, 8)
        shares = [np.unique(dataset.targets[c], return_counts=True) for c in chunks]
        assert all(np.array_equal(classes, shares[0][0]) and np.all(counts == 2) for classes, counts in shares)


def test_distinct_mode_gives_each_rank_its_own_classes():
    ranks = all_ranks("class_imbalanced", DATASET, 8, 2, classes_per_batch=4, rank_classes="distinct")
    for row in global_batches(ranks, 3):
        rank0, rank1 = set(DATASET.targets[row[:8]].tolist()), set(DATASET.targets[row[8:]].tolist())
        assert len(rank0) == len(rank1) == 2 and rank0.isdisjoint(rank1)


def test_k_equal_to_global_batch_is_one_image_per_class():
    dataset = LabelsOnly(np.arange(640) % 40)
    ranks = all_ranks("class_imbalanced", dataset, 8, 2, classes_per_batch=16)
    for row in global_batches(ranks, 0):
        assert np.unique(dataset.targets[row]).size == 16


def test_small_classes_repeat_with_replacement_and_policies():
    # Class 9 has 1 image but m = 4: with replacement its slot is that image 4 times.
    sampler = all_ranks("class_imbalanced", DATASET, 16, 1, classes_per_batch=4)[0]
    seen_tail = False
    for epoch in range(60):
        for row in global_batches([sampler], epoch):
            tail = row[DATASET.targets[row] == 9]
            if tail.size:
                seen_tail = True
                assert tail.size == 4 and np.unique(tail).size == 1
    assert seen_tail
    with pytest.raises(ValueError, match="small_class_policy"):
        all_ranks("class_imbalanced", DATASET, 16, 1, classes_per_batch=4, small_class_policy="error")
    excluded = all_ranks("class_imbalanced", DATASET, 16, 1, classes_per_batch=4, small_class_policy="exclude")[0]
    assert set(excluded.eligible_classes.tolist()) == set(range(9))  # class 9 has 1 image < m = 4
    used = np.unique(DATASET.targets[global_batches([excluded], 0)])
    assert 9 not in used


def test_dominant_class_is_capped_at_one_slot_per_batch_with_a_warning():
    dataset = LabelsOnly(counts_to_labels([700, 100, 100, 100]))
    with pytest.warns(UserWarning, match="too frequent"):
        sampler = all_ranks("class_imbalanced", dataset, 8, 1, classes_per_batch=2)[0]
    batches = global_batches([sampler], 0)
    assert all(np.unique(dataset.targets[row]).size == 2 for row in batches)
    # Class 0 sits in every batch (half of it), the others share the other half.
    np.testing.assert_allclose(sampler.target_class_frequencies, [0.5, 1 / 6, 1 / 6, 1 / 6])


def test_inaturalist_scale_8142_classes_k8():
    """iNat18's 8,142 classes (not divisible by K=8) and 437,513 images, long-tailed; batch 4096 over 8 ranks."""
    num_classes, total = 8142, 437_513
    counts = 2 + np.floor(998 * np.exp(-np.arange(num_classes) / 420.0)).astype(int)  # 1000 down to 2 images
    counts[1000 : 1000 + total - counts.sum()] += 1
    dataset = LabelsOnly(counts_to_labels(counts), num_classes=num_classes)
    assert len(dataset) == total
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*too frequent")  # no class needs capping
        sampler = build_sampler({"NAME": "class_imbalanced", "PARAMS": {"classes_per_batch": 8}}, dataset=dataset,
                                batch_size=512, rank=3, world_size=8, seed=0, drop_last=True)
    assert len(sampler) == (total // 4096) * 512
    sequence = sampler._global_sequence(0).reshape(-1, 4096)
    labels = dataset.targets[sequence]
    sorted_labels = np.sort(labels, axis=1)
    distinct = 1 + (np.diff(sorted_labels, axis=1) != 0).sum(axis=1)
    assert np.all(distinct == 8)
    assert np.all(sorted_labels[:, ::512] == sorted_labels[:, 511::512])  # each sorted block of 512 is one class
    per_class = np.bincount(labels.ravel(), minlength=num_classes)
    target = sampler.target_class_frequencies * labels.size
    assert np.all(np.abs(per_class - target) < 512)
    # Rank 3's own share of global batch i is chunk 3 of it, holding all 8 classes (64 each).
    mine = dataset.targets[sampler.epoch_indices(0).reshape(-1, 512)]
    assert np.all(np.sort(mine, axis=1)[:, ::64] == sorted_labels[:, ::512])


@pytest.mark.parametrize(
    "params,batch_size,world_size,match",
    [({"classes_per_batch": 3}, 8, 2, "multiple of classes_per_batch"),
     ({"classes_per_batch": 16}, 16, 1, "only 10 classes"),
     ({"classes_per_batch": 2, "rank_classes": "distinct"}, 6, 3, "world_size"),
     ({"classes_per_batch": 2, "small_class_policy": "sometimes"}, 8, 1, "small_class_policy"),
     ({"classes_per_batch": 0}, 8, 1, "classes_per_batch")],
)
def test_impossible_configurations_fail(params, batch_size, world_size, match):
    with pytest.raises(ValueError, match=match):
        build_sampler({"NAME": "class_imbalanced", "PARAMS": params}, dataset=DATASET, batch_size=batch_size, rank=0,
                      world_size=world_size, seed=0, drop_last=True)
