"""Every benchmark YAML composes and validates; the full-scale ones carry VISSL's hyper-parameters."""
import pathlib

import pytest

from ssl_ext.config import compose_config, config_root

BENCHMARK_CONFIGS = sorted(
    str(p.relative_to(config_root()).with_suffix("")) for p in (pathlib.Path(config_root()) / "benchmark").rglob("*.yaml")
)
# Shared fragments composed into the runnable configs (they set data/model only).
FRAGMENTS = {"benchmark/linear/imagenet1k_data", "benchmark/linear/clevr_data", "benchmark/linear/vissl_resnet50_protocol",
             "benchmark/tiny/digits_data", "benchmark/tiny/fashion_mnist_data"}
EVAL_ENGINES = {"extract_features", "linear_eval", "knn", "low_shot", "benchmark_suite"}

# (config, epochs, schedule, milestones, number of classes the dataset has) from VISSL's benchmark configs.
VISSL_LINEAR = {
    "imagenet1k": (28, "step", [8, 16, 24]),
    "inaturalist18": (84, "step", [24, 48, 72]),
    "places205": (14, "step", [4, 8, 12]),
    "cifar100": (28, "step", [8, 16, 24]),
    "clevr_count": (50, "cosine", []),
    "clevr_dist": (100, "cosine", []),
    "kitti_dist": (28, "step", [8, 16, 24]),
}


def test_the_required_benchmarks_exist():
    names = set(BENCHMARK_CONFIGS)
    assert {f"benchmark/linear/{n}" for n in VISSL_LINEAR} <= names
    assert {"benchmark/low_shot/imagenet1k_1percent", "benchmark/knn/imagenet1k", "benchmark/knn/inaturalist18"} <= names
    for dataset in ("digits", "fashion_mnist"):
        assert {f"benchmark/tiny/{dataset}_{kind}" for kind in ("knn", "linear_fast", "linear_protocol", "low_shot")} <= names


@pytest.mark.parametrize("name", [n for n in BENCHMARK_CONFIGS if n not in FRAGMENTS])
def test_benchmark_config_composes_and_validates(name):
    cfg = compose_config([f"config={name}"])
    assert cfg.config.ENGINE_NAME in EVAL_ENGINES


@pytest.mark.parametrize("dataset", sorted(VISSL_LINEAR))
def test_linear_configs_use_vissl_hyper_parameters(dataset):
    c = compose_config([f"config=benchmark/linear/{dataset}"]).config
    epochs, schedule, milestones = VISSL_LINEAR[dataset]
    assert c.BENCHMARK.LINEAR.MODE == "protocol" and c.BENCHMARK.LINEAR.PROTOCOL.BATCHNORM
    assert (c.OPTIMIZER.NUM_EPOCHS, c.OPTIMIZER.LR_SCHEDULE.NAME, list(c.OPTIMIZER.LR_SCHEDULE.MILESTONES)) == (epochs, schedule, milestones)
    assert (c.OPTIMIZER.BASE_LR, c.OPTIMIZER.BASE_LR_BATCH_SIZE, c.OPTIMIZER.WEIGHT_DECAY) == (0.01, 256, 5.0e-4)
    assert c.OPTIMIZER.PARAMS.momentum == 0.9 and c.OPTIMIZER.PARAMS.nesterov
    assert c.DATA.TRAIN.BATCHSIZE_PER_REPLICA * c.DISTRIBUTED.NUM_PROC_PER_NODE == 256
    if schedule == "cosine":
        assert c.OPTIMIZER.LR_SCHEDULE.END_FACTOR == 0.01  # 0.01 -> 0.0001


@pytest.mark.parametrize("suite", ["benchmark/suite/hidden_uniform_prior", "benchmark/suite/tiny_cpu"])
def test_suite_entries_compose_with_the_suite_model(suite, tmp_path):
    from ssl_ext.benchmarks.benchmark_suite import _entries, compose_benchmark

    cfg = compose_config([f"config={suite}"])
    for entry in _entries(cfg):
        sub = compose_benchmark(cfg, entry, str(tmp_path))
        assert sub.config.MODEL.TRUNK == cfg.config.MODEL.TRUNK
        assert sub.config.CHECKPOINT.DIR == str(tmp_path / entry["NAME"])
