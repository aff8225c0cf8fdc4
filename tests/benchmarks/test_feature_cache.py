"""Cached features are reused only for the same trunk, weights, data and layers."""
import copy

import numpy as np
import registry
import torch

from ssl_ext.benchmarks import feature_store
from ssl_ext.benchmarks.extraction import ensure_features


def test_cache_is_reused_or_rebuilt(digits_cfg, tmp_path):
    digits_cfg.config.MODEL.TRUNK.PARAMS = {"in_channels": 1, "widths": [4], "out_dim": 8}
    first = ensure_features(digits_cfg)
    assert first["reused"] is False and first["num_rows"] == {"train": 1437, "val": 360}
    root = first["features_dir"]
    before = feature_store.load_feature_set(root, "val", "stage2").features
    assert ensure_features(copy.deepcopy(digits_cfg))["reused"] is True

    torch.manual_seed(7)  # other weights: the cache no longer matches and is rebuilt
    trunk = registry.build_trunk({"NAME": "small_cnn", "PARAMS": {"in_channels": 1, "widths": [4], "out_dim": 8}})
    torch.save(trunk.state_dict(), tmp_path / "w.pth")
    other = copy.deepcopy(digits_cfg)
    other.config.MODEL.WEIGHTS_INIT.PARAMS_FILE = str(tmp_path / "w.pth")
    assert ensure_features(other)["reused"] is False
    after = feature_store.load_feature_set(root, "val", "stage2").features
    assert not np.array_equal(before, after)
    with torch.no_grad():
        trunk.eval()
        from ssl_ext.benchmarks.extraction import single_view_dataset

        first_image = single_view_dataset(other, "VAL", "VAL")[0][0][0].unsqueeze(0)
        assert np.allclose(after[0], trunk(first_image)[0].numpy(), atol=1e-5)

    other.config.BENCHMARK.FEATURES.REUSE = False
    assert ensure_features(other)["reused"] is False
