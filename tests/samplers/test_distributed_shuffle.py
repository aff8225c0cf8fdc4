"""distributed_shuffle: a global permutation per epoch, split across ranks."""
import numpy as np
import pytest

from registry import build_sampler


class Labels:
    def __init__(self, n, num_classes=10):
        self.targets = (np.arange(n) % num_classes).tolist()

    def __len__(self):
        return len(self.targets)


def samplers(n, batch_size, world_size, seed=0, drop_last=True):
    return [
        build_sampler({"NAME": "distributed_shuffle"}, dataset=Labels(n),
                      batch_size=batch_size, rank=r, world_size=world_size, seed=seed, drop_last=drop_last)
        for r in range(world_size)
    ]


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_ranks_are_disjoint_and_cover_full_batches(world_size):
    n, batch = 103, 5
    ranks = samplers(n, batch, world_size)
    parts = [list(s) for s in ranks]
    expected = (n // (batch * world_size)) * batch
    assert all(len(p) == expected == len(s) for p, s in zip(parts, ranks))
    everything = np.concatenate(parts)
    assert len(set(everything.tolist())) == everything.size  # disjoint, no repeats
    assert everything.max() < n


@pytest.mark.parametrize("world_size", [1, 3, 7])
def test_no_drop_last_uses_every_sample(world_size):
    n = 20
    ranks = samplers(n, 4, world_size, drop_last=False)
    parts = [list(s) for s in ranks]
    assert all(len(p) == -(-n // world_size) == len(s) for p, s in zip(parts, ranks))
    assert set(np.concatenate(parts).tolist()) == set(range(n))


def test_global_batch_is_the_chunks_of_all_ranks_and_shuffle_is_global():
    ranks = samplers(64, 4, 2)
    first = [s.epoch_indices(0) for s in ranks]
    global_sequence = ranks[0]._global_sequence(0)
    for i in range(8):
        assert np.array_equal(np.concatenate([first[0][4 * i : 4 * i + 4], first[1][4 * i : 4 * i + 4]]), global_sequence[8 * i : 8 * i + 8])
    # Samples move between ranks across epochs (VISSL only shuffled inside a fixed shard).
    second = ranks[0].epoch_indices(1)
    moved = len(set(second.tolist()) & set(first[1].tolist()))
    assert moved > 5


def test_same_seed_and_epoch_same_order_different_otherwise():
    a, b = samplers(50, 5, 1)[0], samplers(50, 5, 1)[0]
    c = samplers(50, 5, 1, seed=1)[0]
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b)
    assert list(a) != list(c)
    b.set_epoch(4)
    assert list(a) != list(b)
