"""Properties every registered sampler must have: determinism, rank partition, __len__, exact resume."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from registry import build_sampler
from sampler_testing import SAMPLER_NAMES, LabelsOnly, all_ranks, counts_to_labels, global_batches

# Long-tailed labels: 12 classes, 8..180 images (sum 758), so the class-aware samplers must repeat tail images.
LONG_TAIL = LabelsOnly(counts_to_labels([180, 150, 110, 80, 60, 45, 35, 30, 25, 20, 15, 8]))
# PARAMS for the samplers whose defaults do not suit this dataset or that have required parameters;
# every other registered sampler is tested with its defaults.
EXAMPLE_PARAMS = {"class_imbalanced": {"classes_per_batch": 4}, "power_law_class": {"alpha": 0.8}}
PARAMS = {name: EXAMPLE_PARAMS.get(name, {}) for name in SAMPLER_NAMES}


def test_the_built_in_samplers_are_among_the_tested_ones():
    assert {"distributed_shuffle", "class_imbalanced", "uniform_class_resampling", "power_law_class"} <= set(SAMPLER_NAMES)


@pytest.mark.parametrize("name", SAMPLER_NAMES)
@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_ranks_partition_the_global_sequence(name, world_size):
    ranks = all_ranks(name, LONG_TAIL, 8, world_size, seed=5, **PARAMS[name])
    batches = global_batches(ranks, epoch=2)
    # The ranks' chunks, side by side, are exactly the global sequence: no draw is shared or lost.
    assert np.array_equal(batches.reshape(-1)[: batches.size], ranks[0]._global_sequence(2)[: batches.size])
    assert all(len(s) == len(ranks[0]) for s in ranks)
    assert batches.shape == (len(ranks[0]) // 8, 8 * world_size)


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_same_seed_and_epoch_give_the_same_batches(name):
    a = all_ranks(name, LONG_TAIL, 8, 2, seed=3, **PARAMS[name])
    b = all_ranks(name, LONG_TAIL, 8, 2, seed=3, **PARAMS[name])
    c = all_ranks(name, LONG_TAIL, 8, 2, seed=4, **PARAMS[name])
    assert np.array_equal(global_batches(a, 7), global_batches(b, 7))
    assert not np.array_equal(global_batches(a, 7), global_batches(a, 8))
    assert not np.array_equal(global_batches(a, 7), global_batches(c, 7))


@pytest.mark.parametrize("name", ["distributed_shuffle", "class_imbalanced", "uniform_class_resampling"])
@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_get_disjoint_indices_when_no_repeat_is_needed(name, world_size):
    # 6 balanced classes of 48: every sampler can fill an epoch without repeating an image.
    dataset = LabelsOnly(np.arange(288) % 6)
    ranks = all_ranks(name, dataset, 8, world_size, **({"classes_per_batch": 2} if name == "class_imbalanced" else {}))
    batches = global_batches(ranks, epoch=1)
    per_rank = [set(batches[:, r * 8 : (r + 1) * 8].reshape(-1).tolist()) for r in range(world_size)]
    for r in range(world_size):
        for q in range(r + 1, world_size):
            assert per_rank[r].isdisjoint(per_rank[q])
    assert len(np.unique(batches)) == batches.size


@pytest.mark.parametrize("name", SAMPLER_NAMES)
@pytest.mark.parametrize("stop_after", [0, 13, 40])
def test_resume_is_exact_mid_epoch(name, stop_after):
    sampler = all_ranks(name, LONG_TAIL, 8, 2, seed=11, **PARAMS[name])[1]
    sampler.set_epoch(4)
    uninterrupted = list(sampler)
    sampler.set_epoch(4)
    iterator = iter(sampler)
    consumed = [next(iterator) for _ in range(stop_after)]
    state = sampler.state_dict()
    assert state["epoch"] == 4 and state["num_yielded"] == stop_after

    fresh = all_ranks(name, LONG_TAIL, 8, 2, seed=11, **PARAMS[name])[1]
    fresh.load_state_dict(state)
    fresh.set_epoch(4)  # the trainer's usual call at the start of the (resumed) epoch keeps the position
    assert consumed + list(fresh) == uninterrupted
    fresh.set_epoch(5)  # the next epoch starts from the beginning
    sampler.set_epoch(5)
    assert list(fresh) == list(sampler)


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_resume_from_batches_consumed_with_a_prefetching_dataloader(name):
    """With workers the loader pulls indices ahead; the trainer's consumed-batch count is the truth."""
    data = LabelsOnly(LONG_TAIL.targets)
    sampler = all_ranks(name, data, 8, 1, seed=2, **PARAMS[name])[0]
    loader = DataLoader(torch.arange(len(data)), batch_size=8, sampler=sampler, drop_last=True, num_workers=1,
                        prefetch_factor=4)
    reference = [b.tolist() for b in loader]
    seen = []
    for i, batch in enumerate(loader):
        seen.append(batch.tolist())
        if i == 5:
            break
    state = sampler.state_dict(batches_consumed=6)
    assert state["num_yielded"] == 48
    resumed = all_ranks(name, data, 8, 1, seed=2, **PARAMS[name])[0]
    resumed.load_state_dict(state)
    loader = DataLoader(torch.arange(len(data)), batch_size=8, sampler=resumed, drop_last=True)
    assert seen + [b.tolist() for b in loader] == reference


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_load_state_dict_rejects_a_different_seed_or_position(name):
    sampler = all_ranks(name, LONG_TAIL, 8, 1, seed=1, **PARAMS[name])[0]
    with pytest.raises(ValueError, match="seed"):
        sampler.load_state_dict({"epoch": 0, "num_yielded": 0, "seed": 2})
    with pytest.raises(ValueError, match="num_yielded"):
        sampler.load_state_dict({"epoch": 0, "num_yielded": len(sampler) + 1, "seed": 1})


@pytest.mark.parametrize("name", SAMPLER_NAMES)
@pytest.mark.parametrize("bad", [{"batch_size": 0}, {"rank": 2}, {"world_size": 0}])
def test_bad_common_arguments_fail_naming_them(name, bad):
    context = {"dataset": LONG_TAIL, "batch_size": 8, "rank": 0, "world_size": 2, "seed": 0, "drop_last": True, **bad}
    with pytest.raises(ValueError, match=next(iter(bad))):
        build_sampler({"NAME": name, "PARAMS": PARAMS[name]}, **context)


@pytest.mark.parametrize("name", ["class_imbalanced", "uniform_class_resampling", "power_law_class"])
def test_class_samplers_need_targets(name):
    class Unlabelled:
        def __len__(self):
            return 100

    with pytest.raises(ValueError, match="targets"):
        build_sampler({"NAME": name, "PARAMS": PARAMS[name]}, dataset=Unlabelled(), batch_size=8, rank=0, world_size=1, seed=0,
                      drop_last=True)
