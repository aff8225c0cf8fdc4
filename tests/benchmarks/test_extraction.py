"""Feature extraction: whole-batch sharding, and 2 gloo ranks give the single-process features bit for bit."""
import json

import numpy as np
import pytest

from ssl_ext.benchmarks import feature_store
from ssl_ext.benchmarks.extraction import shard_bounds
from ssl_ext.launch.local import launch


@pytest.mark.parametrize("num_items,batch_size,world_size", [(10, 3, 2), (1437, 100, 2), (7, 4, 3), (5, 8, 4), (0, 4, 2), (64, 8, 8)])
def test_shards_are_contiguous_whole_batches_covering_every_item(num_items, batch_size, world_size):
    bounds = [shard_bounds(num_items, batch_size, r, world_size) for r in range(world_size)]
    assert bounds[0][0] == 0 and bounds[-1][1] == num_items
    for (start, end), (next_start, _) in zip(bounds, bounds[1:]):
        assert end == next_start and start % batch_size == 0 and start <= end


SUITE_YAML = """# @package _global_
config:
  ENGINE_NAME: benchmark_suite
  MACHINE: {DEVICE: cpu}
  DISTRIBUTED: {BACKEND: gloo}
  MODEL:
    TRUNK: {NAME: small_cnn, PARAMS: {in_channels: 1, widths: [8], out_dim: 16}}
  BENCHMARK:
    SUITE:
      FLOORS: []  # the floors have their own suite test; this one is about ranks
      BENCHMARKS:
        - NAME: knn
          CONFIG: benchmark/tiny/digits_knn
          OVERRIDES: ["config.BENCHMARK.FEATURES.LAYERS=[stage1,stage2]", "config.DATA.VAL.BATCHSIZE_PER_REPLICA=100"]
        - NAME: low_shot
          CONFIG: benchmark/tiny/digits_low_shot
          OVERRIDES: ["config.BENCHMARK.LOW_SHOT.PERCENTS=[10.0]", "config.BENCHMARK.LOW_SHOT.PER_CLASS=[1]",
                      "config.BENCHMARK.LOW_SHOT.NUM_DRAWS=3", "config.DATA.VAL.BATCHSIZE_PER_REPLICA=100"]
        - NAME: protocol
          CONFIG: benchmark/tiny/digits_linear_protocol
          OVERRIDES: ["config.OPTIMIZER.NUM_EPOCHS=1", "config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=128"]
"""


def run_suite(suite_yaml, run_dir, processes):
    from ssl_ext.config import compose_config

    cfg = compose_config([f"config={suite_yaml}", f"config.CHECKPOINT.DIR={run_dir}",
                          f"config.DISTRIBUTED.NUM_PROC_PER_NODE={processes}"])
    return launch(cfg)


def test_two_gloo_ranks_equal_one_process(tmp_path):
    """Extraction (15 train batches: ranks get 7 and 8, uneven on purpose), kNN and low-shot give the
    single-process numbers exactly on 2 ranks; the protocol linear eval trains with DDP."""
    (tmp_path / "suite.yaml").write_text(SUITE_YAML)
    single = run_suite(tmp_path / "suite.yaml", tmp_path / "one", 1)
    double = run_suite(tmp_path / "suite.yaml", tmp_path / "two", 2)
    for split in ("train", "val"):
        for layer in ("stage1", "stage2"):
            a = feature_store.load_feature_set(str(tmp_path / "one" / "benchmark_suite" / "knn" / "features"), split, layer)
            b = feature_store.load_feature_set(str(tmp_path / "two" / "benchmark_suite" / "knn" / "features"), split, layer)
            assert np.array_equal(a.features, b.features), (split, layer)
            assert np.array_equal(a.labels, b.labels) and np.array_equal(a.ids, np.arange(len(a.ids)))
            assert np.array_equal(a.ids, b.ids) and len(a.ids) == {"train": 1437, "val": 360}[split]
            assert a.features.shape[1] == {"stage1": 8, "stage2": 16}[layer] and np.isfinite(a.features).all()
    meta = json.loads((tmp_path / "two" / "benchmark_suite" / "knn" / "features" / "meta.json").read_text())
    assert meta["layers"] == ["stage1", "stage2"] and meta["num_classes"] == 10

    rows = {run: [r for r in result["rows"] if r["benchmark"] != "protocol"] for run, result in (("one", single), ("two", double))}
    strip = lambda r: {k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
    assert [strip(r) for r in rows["one"]] == [strip(r) for r in rows["two"]]
    assert len(rows["two"]) == 2 * (1 + 4) + 2  # kNN: 2 layers x (the chosen k + 4 fixed k); low-shot: last layer x 2 subsets
    protocol = [r for r in double["rows"] if r["benchmark"] == "protocol"]
    assert len(protocol) == 1 and protocol[0]["top1"] > 15.0  # one epoch on random features, chance is 10
    assert (tmp_path / "two" / "benchmark_suite" / "results.md").read_text().count("| protocol |") == 1
