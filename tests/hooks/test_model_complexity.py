"""model_complexity: parameters and fvcore FLOPs of one image, counted by hand on a linear model."""
import json
from types import SimpleNamespace

import torch
from torch import nn

from registry import build_hook


class LinearModel(nn.Module):
    """Views (N, 1, 2, 2) -> (N, 3): 4*3 weights + 3 biases; fvcore counts 12 multiply-adds per image."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Linear(4, 3)

    def forward(self, views):
        return [self.trunk(v.flatten(1)) for v in views]


def test_counts_by_hand(tmp_path):
    dataset = [([torch.zeros(1, 2, 2)], 0, 0)]
    task = SimpleNamespace(rank=0, resumed_from=None, run_dir=str(tmp_path), device=torch.device("cpu"),
                           student=LinearModel(), train_loader=SimpleNamespace(dataset=dataset))
    build_hook("model_complexity").on_start(task)
    info = json.loads((tmp_path / "model_complexity.json").read_text())
    assert info == {"params": 15, "trainable_params": 15, "flops_per_image": 12, "input_shape": [1, 2, 2]}
    assert task.student.training  # put back in training mode


def test_the_training_run_wrote_it(tiny_run):
    info = json.loads((tiny_run.run_dir / "model_complexity.json").read_text())
    assert info["params"] > 0 and info["flops_per_image"] > 0 and info["input_shape"] == [3, 16, 16]
