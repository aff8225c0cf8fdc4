"""The train_config.yaml a run saves is a complete config: ``config=<that file>`` reproduces the run."""
import json
import os

import torch
from omegaconf import OmegaConf

from ssl_ext.config import compose_config
from ssl_ext.engine.checkpoint import list_checkpoints
from ssl_ext.launch.local import launch
from ssl_ext.utils.io import torch_load

# Values that differ from configs_yaml/demo/tiny_synthetic.yaml and defaults.yaml: if the saved file lost
# any of them the rerun would train differently.
NON_DEFAULT_OVERRIDES = [
    "config.SEED_VALUE=3",
    "config.LOSS.PARAMS.temperature=0.3",
    "config.OPTIMIZER.BASE_LR=0.08",
    "config.OPTIMIZER.MAX_ITERATIONS=4",
    "config.DATA.TRAIN.SOURCE_PARAMS.noise_std=0.1",
    "config.HOOKS.LOG_FREQUENCY=1",
    "config.HOOKS.MODEL_COMPLEXITY.ENABLED=false",
    "config.HOOKS.PLOT_CURVES=false",
]


def loss_records(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        return [(r["iteration"], r["loss"]) for r in map(json.loads, f)]


def final_weights(run_dir):
    _, path = list_checkpoints(str(run_dir))[0]
    return torch_load(path)["model"]


def test_saved_train_config_reproduces_losses_and_weights_exactly(tmp_path):
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    launch(compose_config(["config=demo/tiny_synthetic", f"config.CHECKPOINT.DIR={first_dir}", *NON_DEFAULT_OVERRIDES]))
    saved = first_dir / "train_config.yaml"

    rerun = compose_config([f"config={saved}", f"config.CHECKPOINT.DIR={second_dir}"])
    original = OmegaConf.load(saved)
    original.config.CHECKPOINT.DIR = str(second_dir)
    assert OmegaConf.to_container(rerun) == OmegaConf.to_container(original)
    assert rerun.config.LOSS.PARAMS.temperature == 0.3 and rerun.config.SEED_VALUE == 3
    launch(rerun)

    first_losses, second_losses = loss_records(first_dir), loss_records(second_dir)
    assert [i for i, _ in first_losses] == [1, 2, 3, 4]
    assert second_losses == first_losses  # bit for bit
    first_weights, second_weights = final_weights(first_dir), final_weights(second_dir)
    assert first_weights.keys() == second_weights.keys()
    for name, tensor in first_weights.items():
        assert torch.equal(tensor, second_weights[name]), name
    # The rerun's own saved config is the same file up to its run directory.
    assert (second_dir / "train_config.yaml").read_text() == saved.read_text().replace(str(first_dir), str(second_dir))
