"""The two floors every accuracy is shown next to: raw pixels (``pixels`` trunk) and the random-init trunk
(``MODEL.WEIGHTS_INIT.RANDOM_INIT``), plus ``PARAMS_FILE`` given as a run directory."""
import copy

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import registry
from ssl_ext.benchmarks import feature_store
from ssl_ext.engine.weights import WeightsInitError, load_weights_init, resolve_params_file


def test_pixels_trunk_runs_through_extraction_and_knn_like_a_trained_trunk(digits_cfg):
    """The engine path must give exactly the transformed images as features; cosine kNN on raw 16x16 digits
    is a strong floor (about 95 %)."""
    from ssl_ext.benchmarks.extraction import single_view_dataset

    cfg = copy.deepcopy(digits_cfg)
    OmegaConf.update(cfg, "config.MODEL.TRUNK", {"NAME": "pixels", "PARAMS": {"in_channels": 1, "image_size": 16}}, merge=False)
    cfg.config.BENCHMARK.KNN.K = [20]
    result = registry.ENGINES.get("knn")(cfg)
    assert 90.0 < result["rows"][0]["top1"] <= 100.0
    train = feature_store.load_feature_set(result["features_dir"], "train", "pixels")
    image = single_view_dataset(cfg, "TRAIN", transform_split="VAL")[5][0][0]
    np.testing.assert_allclose(train.features[5], image.flatten().numpy(), rtol=0, atol=1e-6)


def _small_trunk_checkpoint(cfg, folder):
    """A run-directory layout with two checkpoints whose trunks differ; returns (older, newer) state dicts."""
    from ssl_ext.models.build import build_trunk
    from ssl_ext.engine.checkpoint import checkpoint_path

    states = []
    for iteration, seed in ((10, 1), (20, 2)):
        torch.manual_seed(seed)
        trunk = build_trunk(cfg)
        path = checkpoint_path(str(folder), iteration)
        (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
        torch.save({"model": {f"trunk.{k}": v for k, v in trunk.state_dict().items()}}, path)
        states.append(trunk.state_dict())
    return states


def test_params_file_may_be_a_run_directory_meaning_its_final_checkpoint(digits_cfg, tmp_path):
    from ssl_ext.models.build import build_trunk

    run = tmp_path / "pretrain_run"
    _, newest = _small_trunk_checkpoint(digits_cfg, run)
    assert resolve_params_file(str(run)).endswith("model_iteration00000020.torch")
    trunk = build_trunk(digits_cfg)
    weights = OmegaConf.create({"PARAMS_FILE": str(run), "SOURCE": "student", "SKIP_LAYERS": [], "RANDOM_INIT": False})
    assert load_weights_init(trunk, weights)
    for key, value in trunk.state_dict().items():
        assert torch.equal(value, newest[key]), key
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(WeightsInitError, match="empty_run.*without checkpoints"):
        resolve_params_file(str(tmp_path / "empty_run"))


def test_random_init_key_ignores_params_file_and_matches_the_seeded_random_trunk(digits_cfg, tmp_path):
    """One key turns any evaluation config into its random-init floor: same features as PARAMS_FILE="",
    different from the trained weights, and a cache made with the weights is not reused for it."""
    run = tmp_path / "pretrain_run"
    _small_trunk_checkpoint(digits_cfg, run)
    cfg = copy.deepcopy(digits_cfg)
    cfg.config.ENGINE_NAME = "extract_features"
    cfg.config.MODEL.WEIGHTS_INIT.PARAMS_FILE = str(run)
    trained = registry.ENGINES.get("extract_features")(cfg)
    trained_x = feature_store.load_feature_set(trained["features_dir"], "val", trained["layers"][0]).features
    cfg.config.MODEL.WEIGHTS_INIT.RANDOM_INIT = True
    floor = registry.ENGINES.get("knn")(cfg)
    assert floor["reused"] is False if "reused" in floor else True
    floor_x = feature_store.load_feature_set(floor["features_dir"], "val", trained["layers"][0]).features
    reference = copy.deepcopy(digits_cfg)
    reference.config.ENGINE_NAME = "extract_features"
    reference.config.CHECKPOINT.DIR = str(tmp_path / "reference")
    reference.config.MODEL.WEIGHTS_INIT.PARAMS_FILE = ""
    plain = registry.ENGINES.get("extract_features")(reference)
    plain_x = feature_store.load_feature_set(plain["features_dir"], "val", trained["layers"][0]).features
    np.testing.assert_array_equal(floor_x, plain_x)
    assert not np.allclose(floor_x, trained_x)
