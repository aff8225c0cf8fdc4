"""Two real gloo processes, each with its own DataLoader over its rank's sampler.

Every sampler runs in one spawn (to keep the suite fast). Each rank builds its
sampler from torch.distributed's rank and world size, loads batches with a
DataLoader, and all-gathers them; rank 0 checks that step i's batches of both
ranks form global batch i of the single-process layout, that the ranks' indices
are disjoint where the sampler needs no repeats, and that class_imbalanced's
global batches hold exactly K classes.
"""
import os
import socket

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

WORLD_SIZE, BATCH, K = 2, 8, 4
TARGETS = np.arange(480) % 12  # balanced, so no sampler has to repeat an image within an epoch
CASES = {
    "distributed_shuffle": {},
    "class_imbalanced": {"classes_per_batch": K},
    "uniform_class_resampling": {},
    "power_law_class": {"alpha": 1.0},
}


class Labels(torch.utils.data.Dataset):
    targets = TARGETS.tolist()
    num_classes = 12

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        return index


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, port, out_dir):
    # The sampler classes themselves: discovering every plugin of the project is not needed in the workers.
    from ssl_ext.samplers.uniform_class_resampling import UniformClassResamplingSampler
    from ssl_ext.samplers.class_imbalanced import ClassImbalancedSampler
    from ssl_ext.samplers.distributed_shuffle import DistributedShuffleSampler
    from ssl_ext.samplers.power_law_class import PowerLawClassSampler

    classes = {"distributed_shuffle": DistributedShuffleSampler, "class_imbalanced": ClassImbalancedSampler,
               "uniform_class_resampling": UniformClassResamplingSampler, "power_law_class": PowerLawClassSampler}
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD_SIZE)
    results = {}
    for name, params in CASES.items():
        cls = classes[name]
        sampler = cls(Labels(), batch_size=BATCH, rank=dist.get_rank(), world_size=dist.get_world_size(), seed=9, **params)
        sampler.set_epoch(1)
        loader = torch.utils.data.DataLoader(Labels(), batch_size=BATCH, sampler=sampler, drop_last=True)
        mine = torch.stack(list(loader))
        gathered = [torch.empty_like(mine) for _ in range(WORLD_SIZE)]
        dist.all_gather(gathered, mine)
        single = cls(Labels(), batch_size=BATCH, rank=0, world_size=WORLD_SIZE, seed=9, **params)
        results[name] = (torch.cat(gathered, dim=1).numpy(), single._global_sequence(1))
    if rank == 0:
        np.save(os.path.join(out_dir, "results.npy"), np.array(results, dtype=object), allow_pickle=True)
    dist.destroy_process_group()


def test_samplers_across_two_gloo_processes(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    results = np.load(tmp_path / "results.npy", allow_pickle=True).item()
    assert set(results) == set(CASES)
    for name, (batches, global_sequence) in results.items():
        assert np.array_equal(batches.reshape(-1), global_sequence[: batches.size]), name
        if name != "power_law_class":
            assert np.unique(batches).size == batches.size, name
    for row in results["class_imbalanced"][0]:
        assert np.unique(TARGETS[row]).size == K
