"""Sampler index generation at iNaturalist-18 scale: time and extra memory for one epoch.

437,513 samples in 8,142 classes with a long-tailed histogram (1,000 images in
the head class down to 2 in the tail, exponential decay, like iNat18's), global
batch 4,096, K = 8 classes per batch. Target for class_imbalanced: <= 1 s and
<= 100 MB of extra memory per epoch on the development machine (2 CPU cores).
The other samplers are measured at the same scale for reference.

    .venv/bin/python benchmarks/sampler_index_generation.py [--epochs 5] [--world-size 8]
"""
import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ssl_ext.samplers.uniform_class_resampling import UniformClassResamplingSampler  # noqa: E402
from ssl_ext.samplers.class_imbalanced import ClassImbalancedSampler  # noqa: E402
from ssl_ext.samplers.distributed_shuffle import DistributedShuffleSampler  # noqa: E402
from ssl_ext.samplers.power_law_class import PowerLawClassSampler  # noqa: E402

NUM_SAMPLES, NUM_CLASSES, GLOBAL_BATCH, K = 437_513, 8_142, 4_096, 8
TIME_LIMIT_S, MEMORY_LIMIT_MB = 1.0, 100.0


class INatLabels:
    """Only what samplers read: ``targets``, ``num_classes`` and ``len``."""

    def __init__(self):
        counts = 2 + np.floor(998 * np.exp(-np.arange(NUM_CLASSES) / 420.0)).astype(np.int64)
        counts[1000 : 1000 + NUM_SAMPLES - counts.sum()] += 1
        assert counts.sum() == NUM_SAMPLES and counts.max() == 1000 and counts.min() == 2
        self.targets = np.repeat(np.arange(NUM_CLASSES), counts)
        self.num_classes = NUM_CLASSES

    def __len__(self):
        return NUM_SAMPLES


def measure(sampler, epochs):
    """Median and worst time per epoch (untraced), then the peak traced allocation of one more epoch."""
    times = []
    for epoch in range(epochs):
        start = time.perf_counter()
        sampler.epoch_indices(epoch)
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    indices = sampler.epoch_indices(epochs)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    del indices
    return statistics.median(times), max(times), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--world-size", type=int, default=8)
    args = parser.parse_args()
    data = INatLabels()
    per_replica = GLOBAL_BATCH // args.world_size
    common = dict(batch_size=per_replica, rank=0, world_size=args.world_size, seed=0)
    samplers = {
        "class_imbalanced (K=8)": lambda: ClassImbalancedSampler(data, classes_per_batch=K, **common),
        "distributed_shuffle": lambda: DistributedShuffleSampler(data, **common),
        "uniform_class_resampling": lambda: UniformClassResamplingSampler(data, **common),
        "power_law_class": lambda: PowerLawClassSampler(data, **common),
    }
    print(f"{NUM_SAMPLES:,} samples, {NUM_CLASSES:,} classes, global batch {GLOBAL_BATCH} = {per_replica} x {args.world_size} ranks")
    print(f"{'sampler':<24} {'build s':>8} {'epoch s (median)':>17} {'epoch s (max)':>14} {'peak extra MB':>14}")
    verdict = True
    for name, make in samplers.items():
        start = time.perf_counter()
        sampler = make()
        built = time.perf_counter() - start
        median, worst, peak = measure(sampler, args.epochs)
        print(f"{name:<24} {built:>8.3f} {median:>17.3f} {worst:>14.3f} {peak:>14.1f}")
        if name.startswith("class_imbalanced"):
            verdict = worst <= TIME_LIMIT_S and peak <= MEMORY_LIMIT_MB
    print(f"class_imbalanced target (<= {TIME_LIMIT_S} s, <= {MEMORY_LIMIT_MB} MB per epoch): {'MET' if verdict else 'MISSED'}")
    sys.exit(0 if verdict else 1)


if __name__ == "__main__":
    main()
