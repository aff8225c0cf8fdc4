"""Feature extraction: whole-batch sharding, and 2 gloo ranks give the single-process features bit for bit."""
import copy
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


def run_extraction(cfg, run_dir, processes):
    cfg = copy.deepcopy(cfg)
    cfg.config.ENGINE_NAME = "extract_features"
    cfg.config.CHECKPOINT.DIR = str(run_dir)
    cfg.config.DISTRIBUTED.NUM_PROC_PER_NODE = processes
    cfg.config.DISTRIBUTED.BACKEND = "gloo"
    result = launch(cfg)
    return result


def test_two_gloo_ranks_equal_one_process(tmp_path, digits_cfg):
    cfg = copy.deepcopy(digits_cfg)
    cfg.config.MODEL.TRUNK.PARAMS = {"widths": [8], "out_dim": 16}
    cfg.config.BENCHMARK.FEATURES.LAYERS = ["stage1", "stage2"]
    cfg.config.DATA.VAL.BATCHSIZE_PER_REPLICA = 100  # 15 train batches: ranks get 7 and 8, uneven on purpose
    single = run_extraction(cfg, tmp_path / "one", 1)
    double = run_extraction(cfg, tmp_path / "two", 2)
    assert single["num_rows"] == double["num_rows"] == {"train": 1437, "val": 360}
    for split in ("train", "val"):
        for layer in ("stage1", "stage2"):
            a = feature_store.load_feature_set(str(tmp_path / "one" / "features"), split, layer)
            b = feature_store.load_feature_set(str(tmp_path / "two" / "features"), split, layer)
            assert np.array_equal(a.features, b.features), (split, layer)
            assert np.array_equal(a.labels, b.labels) and np.array_equal(a.ids, np.arange(len(a.ids)))
            assert np.array_equal(a.ids, b.ids)
            assert a.features.shape[1] == {"stage1": 8, "stage2": 16}[layer] and np.isfinite(a.features).all()
    meta = json.loads((tmp_path / "two" / "features" / "meta.json").read_text())
    assert meta["layers"] == ["stage1", "stage2"] and meta["num_classes"] == 10
    assert (tmp_path / "two" / "extract_features" / "results.md").read_text().count("| train |") == 2
