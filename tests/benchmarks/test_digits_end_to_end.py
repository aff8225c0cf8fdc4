"""End to end on real data (scikit-learn's digits): pretrain, extract, kNN, both linear modes, low-shot.

Three models are evaluated with the same engines and configs
(configs_yaml/benchmark/tiny/digits_*.yaml, small_cnn at 16x16 grayscale):

* ``random``: the seeded random initialisation (no weights file);
* ``simclr``: 2 epochs of SimCLR through the trainer (configs_yaml/pretrain/simclr/simclr_cpu_tiny.yaml);
* ``supervised``: the upper bound, the same trunk trained with labels (cross-entropy, 8 epochs).

Sanity floors (top-1 %, 360 val images, chance = 10), set about 5-10 points under
what these runs give on a 2-core CPU (random 85 / 92 / 61, SimCLR 93 / 97 / 81,
supervised 99 / 99 / 98 for kNN@20 / fast linear / low-shot 10 %) so thread-count
noise never trips them, while a broken engine (wrong labels, shuffled rows,
untrained heads, wrong weights) falls far below. Random conv features are already
good on digits, hence the high random floor.
"""
import copy
import json

import numpy as np
import pytest
import torch

import registry
from ssl_ext.benchmarks import feature_store

FLOORS = {
    #             kNN@20  fast linear  low-shot 10 %
    "random":     (75.0, 82.0, 45.0),
    "simclr":     (85.0, 90.0, 65.0),
    "supervised": (94.0, 95.0, 90.0),
}
# SimCLR must beat random by this much (kNN@20, low-shot 10 %), and supervised must not fall below SimCLR.
SSL_GAIN = (2.0, 8.0)


def run_engine(base_cfg, run_dir, engine, weights="", **overrides):
    from omegaconf import OmegaConf

    cfg = copy.deepcopy(base_cfg)
    cfg.config.ENGINE_NAME = engine
    cfg.config.CHECKPOINT.DIR = str(run_dir)
    cfg.config.MODEL.WEIGHTS_INIT.PARAMS_FILE = weights
    for key, value in overrides.items():
        OmegaConf.update(cfg, "config." + key, value, merge=False)
    return registry.ENGINES.get(engine)(cfg)


def pretrain_simclr(run_dir):
    from ssl_ext.config import compose_config
    from ssl_ext.launch.local import launch

    cfg = compose_config([
        "config=pretrain/simclr/simclr_cpu_tiny", f"config.CHECKPOINT.DIR={run_dir}", "config.MACHINE.DEVICE=cpu",
        "config.HOOKS.MODEL_COMPLEXITY.ENABLED=false", "config.HOOKS.PLOT_CURVES=false",
    ])
    return launch(cfg)["final_checkpoint"]


def train_supervised(cfg, path, epochs: int = 8, lr: float = 0.05, plain_state_dict: bool = False):
    """Supervised upper bound: cross-entropy on the un-augmented train images.

    Saved in the trainer's checkpoint layout, or (``plain_state_dict``) as a DDP-style plain state
    dict so that both weight-loading paths are exercised.
    """
    from ssl_ext.benchmarks.extraction import single_view_dataset
    from ssl_ext.models.build import build_trunk

    data = single_view_dataset(cfg, "TRAIN", transform_split="VAL")
    images = torch.stack([data[i][0][0] for i in range(len(data))])
    labels = torch.tensor(data.targets)
    torch.manual_seed(0)
    trunk = build_trunk(cfg)
    head = torch.nn.Linear(trunk.out_dim, 10)
    optimizer = torch.optim.SGD([*trunk.parameters(), *head.parameters()], lr=lr, momentum=0.9)
    for _ in range(epochs):
        for batch in torch.randperm(len(labels)).split(64):
            loss = torch.nn.functional.cross_entropy(head(trunk(images[batch])), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    if plain_state_dict:
        torch.save({"module." + k: v for k, v in trunk.state_dict().items()}, path)
    else:
        model = {**{f"trunk.{k}": v for k, v in trunk.state_dict().items()}, "heads.0.weight": head.weight.detach()}
        torch.save({"model": model, "iteration": 1, "epoch": epochs}, path)
    return str(path)


@pytest.fixture(scope="module")
def models(tmp_path_factory, _digits_cfg):
    root = tmp_path_factory.mktemp("digits_models")
    return {
        "random": "",
        "simclr": pretrain_simclr(root / "simclr"),
        "supervised": train_supervised(_digits_cfg, root / "supervised.torch"),
    }


@pytest.fixture(scope="module")
def results(tmp_path_factory, _digits_cfg, models):
    root = tmp_path_factory.mktemp("digits_eval")
    out = {}
    for name, weights in models.items():
        for engine in ("knn", "linear_eval", "low_shot"):
            out[name, engine] = run_engine(_digits_cfg, root / name, engine, weights, **{"BENCHMARK.LINEAR.FAST.BATCH_SIZE": 64})
    out["root"] = root
    return out


def headline(results, name):
    knn = next(r for r in results[name, "knn"]["rows"] if r["k"] == 20)["top1"]
    linear = results[name, "linear_eval"]["rows"][0]["top1"]
    low_shot = next(r for r in results[name, "low_shot"]["rows"] if r["subset"] == "10%")["top1"]
    return knn, linear, low_shot


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_accuracy_clears_the_sanity_floors(results, name):
    print(name, "kNN@20 / fast linear / low-shot 10%:", [round(v, 2) for v in headline(results, name)])
    for metric, value, floor in zip(("kNN@20", "fast linear", "low-shot 10%"), headline(results, name), FLOORS[name]):
        assert value >= floor, f"{name} {metric}: {value:.2f} < floor {floor}"


def test_pretraining_helps_and_supervision_bounds_it(results):
    random, simclr, supervised = (headline(results, n) for n in ("random", "simclr", "supervised"))
    assert simclr[0] >= random[0] + SSL_GAIN[0] and simclr[2] >= random[2] + SSL_GAIN[1], (random, simclr)
    assert supervised[0] >= simclr[0] and supervised[2] >= simclr[2], (simclr, supervised)


def test_every_engine_wrote_results_json_and_markdown(results):
    root = results["root"]
    for engine, rows in (("knn", 1 + 4), ("linear_eval", 1), ("low_shot", 4)):  # kNN: the chosen k, then each fixed k
        saved = json.loads((root / "simclr" / engine / "results.json").read_text())
        assert saved["engine"] == engine and len(saved["rows"]) == rows
        table = (root / "simclr" / engine / "results.md").read_text()
        assert table.count("\n| stage3 |") == rows and "top1" in table
    low_shot = (root / "simclr" / "low_shot" / "results.md").read_text()
    assert " ± " in low_shot
    grid = json.loads((root / "simclr" / "linear_eval" / "results.json").read_text())["grid"]["stage3"]
    row = results["simclr", "linear_eval"]["rows"][0]
    # The reported point is the grid's best on the train holdout; val scores of the grid are not even computed.
    best = max(grid, key=lambda g: g["holdout_top1"])
    assert len(grid) == 7 * 4 and (row["lr"], row["weight_decay"]) == (best["lr"], best["weight_decay"])
    assert row["selected_on"] == "train holdout" and all("val_top1" not in g for g in grid)
    knn = results["simclr", "knn"]["rows"][0]
    assert knn["method"] == "knn" and knn["selected_on"] == "train holdout" and knn["k"] in (10, 20, 100, 200)
    low = results["simclr", "low_shot"]["rows"][0]
    assert low["selected_on"] == "train holdout" and set(low["lambda"].split(", ")) <= {"0.0001", "0.001", "0.01"}


def test_choosing_on_val_is_opt_in_labelled_and_is_the_val_maximum(models, _digits_cfg, tmp_path):
    result = run_engine(_digits_cfg, tmp_path, "linear_eval", models["simclr"], **{
        "BENCHMARK.SELECT_ON": "val", "BENCHMARK.LINEAR.FAST.BATCH_SIZE": 64,
    })
    row = result["rows"][0]
    assert row["method"] == "linear (fast), best on val" and row["selected_on"] == "best on val"
    assert row["top1"] == pytest.approx(max(g["val_top1"] for g in result["grid"]["stage3"]))
    with pytest.raises(ValueError, match="SELECT_ON=val"):
        run_engine(_digits_cfg, tmp_path / "legacy", "linear_eval", models["simclr"], **{"BENCHMARK.LINEAR.FAST.HOLDOUT_FRACTION": 0.0})


def test_fast_and_protocol_linear_eval_agree_on_the_same_features(results, models, _digits_cfg, tmp_path):
    """Same features (no augmentation), model (BatchNorm + linear), SGD settings and epochs: within 1.5 points."""
    settings = {
        "OPTIMIZER.NUM_EPOCHS": 4, "OPTIMIZER.BASE_LR": 0.1, "OPTIMIZER.WEIGHT_DECAY": 1.0e-4,
        "BENCHMARK.LINEAR.FAST.LEARNING_RATES": [0.1], "BENCHMARK.LINEAR.FAST.WEIGHT_DECAYS": [1.0e-4],
        "BENCHMARK.LINEAR.FAST.BATCH_SIZE": 64, "DATA.TRAIN.BATCHSIZE_PER_REPLICA": 64,
        "DATA.TRAIN.TRANSFORM": copy.deepcopy(_digits_cfg.config.DATA.VAL.TRANSFORM),
    }
    fast = run_engine(_digits_cfg, tmp_path / "fast", "linear_eval", models["simclr"], **settings)["rows"][0]
    protocol = run_engine(
        _digits_cfg, tmp_path / "protocol", "linear_eval", models["simclr"], **settings, **{"BENCHMARK.LINEAR.MODE": "protocol"}
    )["rows"][0]
    assert protocol["method"] == "linear (protocol)" and fast["method"] == "linear (fast)"
    assert abs(fast["top1"] - protocol["top1"]) <= 1.5, (fast["top1"], protocol["top1"])
    assert fast["top1"] >= FLOORS["simclr"][1]


def test_fast_probe_ignores_the_pretraining_optimizer_and_follows_its_own_schedule(models, _digits_cfg, tmp_path):
    """A method's warm-up or momentum must not change its probe; FAST.SCHEDULE/MOMENTUM do."""
    probe = {"BENCHMARK.LINEAR.FAST.NUM_EPOCHS": 3, "BENCHMARK.LINEAR.FAST.LEARNING_RATES": [0.3],
             "BENCHMARK.LINEAR.FAST.WEIGHT_DECAYS": [0.0], "BENCHMARK.LINEAR.FAST.BATCH_SIZE": 64}

    def top1(name, **overrides):
        return run_engine(_digits_cfg, tmp_path / name, "linear_eval", models["simclr"], **probe, **overrides)["rows"][0]["top1"]

    plain = top1("plain")
    assert top1("pretraining_optimizer", **{
        "OPTIMIZER.LR_SCHEDULE.WARMUP_EPOCHS": 2.0, "OPTIMIZER.NUM_EPOCHS": 3, "OPTIMIZER.PARAMS.momentum": 0.0,
        "OPTIMIZER.PARAMS.nesterov": True}) == plain
    changed = {top1("constant", **{"BENCHMARK.LINEAR.FAST.SCHEDULE": "constant"}),
               top1("no_momentum", **{"BENCHMARK.LINEAR.FAST.MOMENTUM": 0.0})}
    assert plain not in changed, (plain, changed)


def test_protocol_mode_with_augmentation(models, _digits_cfg, tmp_path):
    """VISSL's recipe with the benchmark's random-crop augmentation, evaluated every epoch."""
    result = run_engine(_digits_cfg, tmp_path, "linear_eval", models["supervised"], **{
        "BENCHMARK.LINEAR.MODE": "protocol", "OPTIMIZER.NUM_EPOCHS": 2,
    })
    assert [h["epoch"] for h in result["history"]] == [1, 2]
    row = result["rows"][0]
    assert row["top1"] >= 90.0 and row["top5"] >= row["top1"] and row["best_epoch_top1"] >= row["top1"]
    assert (tmp_path / "linear_eval" / "results.md").exists()


def test_long_tailed_train_set_reports_head_medium_tail(models, _digits_cfg, tmp_path):
    """digits made long-tailed (exponential, ratio 10; head > 100, tail < 20 images): group accuracies add up."""
    result = run_engine(_digits_cfg, tmp_path, "knn", models["supervised"], **{
        "DATA.TRAIN.LONG_TAIL.ENABLED": True, "DATA.TRAIN.LONG_TAIL.IMBALANCE_RATIO": 10.0, "BENCHMARK.KNN.K": [20],
    })
    row = result["rows"][0]
    meta = feature_store.load_meta(str(tmp_path / "features"))
    groups = meta["class_groups"]
    assert groups["head"] and groups["medium"] and groups["tail"], groups
    assert sorted(groups["head"] + groups["medium"] + groups["tail"]) == list(range(10))
    val = feature_store.load_feature_set(str(tmp_path / "features"), "val", "stage3")
    weights = [np.isin(val.labels, groups[g]).sum() for g in ("head", "medium", "tail")]
    overall = sum(w * row[g] for w, g in zip(weights, ("head", "medium", "tail"))) / sum(weights)
    assert overall == pytest.approx(row["top1"], abs=1e-3)
    assert "| top1 | top5 | head | medium | tail |" in (tmp_path / "knn" / "results.md").read_text()
