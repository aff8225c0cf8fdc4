"""benchmark_suite: several benchmarks on one checkpoint through tools/benchmark_suite.py, one table."""
import importlib.util
import json
import os

import numpy as np
import pytest
import torch

import registry
from tests.benchmarks.test_digits_end_to_end import run_engine

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SUITE_YAML = """# @package _global_
config:
  ENGINE_NAME: benchmark_suite
  MACHINE: {DEVICE: cpu}
  MODEL:
    TRUNK: {NAME: small_cnn, PARAMS: {in_channels: 1, widths: [8], out_dim: 16}}
  BENCHMARK:
    SUITE:
      BENCHMARKS:
        - {NAME: knn20, CONFIG: benchmark/tiny/digits_knn, OVERRIDES: ["config.BENCHMARK.KNN.K=[20]"]}
        - {NAME: linear, CONFIG: benchmark/tiny/digits_linear_fast, OVERRIDES: ["config.OPTIMIZER.NUM_EPOCHS=2"]}
"""


def suite_command():
    spec = importlib.util.spec_from_file_location("benchmark_suite_tool", os.path.join(ROOT, "tools", "benchmark_suite.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_suite_runs_each_benchmark_on_the_given_weights(tmp_path, digits_cfg):
    torch.manual_seed(3)
    trunk = registry.build_trunk({"NAME": "small_cnn", "PARAMS": {"in_channels": 1, "widths": [8], "out_dim": 16}})
    weights = tmp_path / "weights.pth"
    torch.save({"module." + k: v for k, v in trunk.state_dict().items()}, weights)
    (tmp_path / "suite.yaml").write_text(SUITE_YAML)
    out = tmp_path / "suite_run"
    code = suite_command()([f"config={tmp_path / 'suite.yaml'}", "--weights", str(weights), f"config.CHECKPOINT.DIR={out}"])
    assert code == 0
    summary = json.loads((out / "benchmark_suite" / "results.json").read_text())
    # Both floors follow the model's row of every benchmark by default (pixels at the benchmark's 16x16 grey).
    models = ["weights.pth", "floor: raw pixels", "floor: random-init trunk"]
    assert [(r["benchmark"], r["model"], r["layer"]) for r in summary["rows"]] == [
        (name, model, "pixels" if "pixels" in model else "stage2") for name in ("knn20", "linear") for model in models
    ]
    assert summary["weights_init"]["PARAMS_FILE"] == str(weights) and summary["floors"] == ["pixels", "random_init"]
    table = (out / "benchmark_suite" / "results.md").read_text()
    assert "| knn20 | weights.pth | knn | stage2 |" in table and "| linear | floor: raw pixels | linear_eval | pixels |" in table
    assert (out / "benchmark_suite" / "knn20" / "knn" / "results.json").exists()
    pixel_features = out / "benchmark_suite" / "knn20" / "floor_pixels" / "features" / "val" / "pixels_features.npy"
    assert pixel_features.exists() and np.load(pixel_features).shape == (360, 256)
    # The random-init floor is the same trunk at its seeded initialisation: not the loaded weights.
    rows = {(r["benchmark"], r["model"]): r["top1"] for r in summary["rows"]}
    assert rows["knn20", "floor: random-init trunk"] != rows["knn20", "weights.pth"]

    # The suite's row is exactly what the benchmark gives on its own with the same weights and trunk.
    digits_cfg.config.MODEL.TRUNK.PARAMS = {"in_channels": 1, "widths": [8], "out_dim": 16}
    alone = run_engine(digits_cfg, tmp_path / "alone", "knn", str(weights), **{"BENCHMARK.KNN.K": [20]})
    assert summary["rows"][0]["top1"] == pytest.approx(alone["rows"][0]["top1"], abs=1e-9)


def test_suite_entries_are_checked_before_anything_runs(digits_cfg):
    engine = registry.ENGINES.get("benchmark_suite")
    digits_cfg.config.BENCHMARK.SUITE.BENCHMARKS = []
    with pytest.raises(ValueError, match="BENCHMARKS is empty"):
        engine(digits_cfg)
    digits_cfg.config.BENCHMARK.SUITE.BENCHMARKS = [{"NAME": "a", "CONFIG": "benchmark/tiny/digits_knn"}] * 2
    with pytest.raises(ValueError, match="used twice"):
        engine(digits_cfg)
    digits_cfg.config.BENCHMARK.SUITE.BENCHMARKS = [{"NAME": "a", "CONFIG": "benchmark/tiny/digits_knn", "OVERIDES": []}]
    with pytest.raises(ValueError, match=r"unknown keys \['OVERIDES'\]"):
        engine(digits_cfg)
