"""benchmarks/gpu_check.py: safe on a machine without a GPU, and its checks' logic run on the CPU.

The GPU run itself happens on a GPU machine (issue 17); these tests make sure the script that
goes there validates its inputs, exits cleanly without CUDA, and that every check's code path
(training runs and their comparison, DDP on a 1-rank group, the evaluation engines, trainer vs
bare loop, loss timings) works end to end with ``--device cpu``.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_without_cuda_it_lists_its_inputs_and_exits_zero_in_seconds(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OUT": str(out)}
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert "no CUDA device" in done.stdout
    assert "simclr_cpu_tiny" in done.stdout and "msn_cpu_tiny" in done.stdout  # the configs it validated
    assert elapsed < 60, f"took {elapsed:.1f} s"
    assert not out.exists()  # nothing ran, nothing written


def test_bad_arguments_stop_before_anything_runs(gpu_check, capsys):
    assert gpu_check.main(["--configs", "no_such_method"]) == 2
    assert "'no_such_method' matches none of" in capsys.readouterr().err
    assert gpu_check.main(["--checks", "train,warp_drive"]) == 2
    assert "warp_drive" in capsys.readouterr().err


def test_config_selection_prefers_the_exact_name(gpu_check):
    root = gpu_check.config_root()
    every = gpu_check.find_tiny_configs(root)
    assert all("cpu_tiny" in p.stem for p in every) and len(every) >= 7
    assert [p.stem for p in gpu_check.find_tiny_configs(root, ["simclr_cpu_tiny"])] == ["simclr_cpu_tiny"]
    assert {p.stem for p in gpu_check.find_tiny_configs(root, ["msbreg"])} >= {"msbreg_cpu_tiny", "msbreg_byol_cpu_tiny"}


def test_loss_comparisons(gpu_check):
    assert gpu_check.decreasing([4.0, 4.0, 3.0, 2.0]) == (True, 4.0, 2.0)
    assert gpu_check.decreasing([1.0, 2.0, 3.0, 0.5, 1.5, 1.0, 2.0, 3.0])[0] is False  # first 1.5 < last 2.5
    reference = [{"loss": 2.0, "ce": 1.0}, {"loss": 1.0, "ce": 0.5}]
    assert gpu_check.max_relative_difference(reference, reference, 2) == (0.0, "")
    worst, where = gpu_check.max_relative_difference(reference, [{"loss": 2.0, "ce": 1.0}, {"loss": 1.001, "ce": 0.5}], 2)
    assert worst == pytest.approx(0.001 / 1.001) and where.startswith("step 2 loss")
    assert gpu_check.max_relative_difference(reference, [{"loss": 2.0, "ce": 1.0}, {"loss": 9.0, "ce": 9.0}], 1)[0] == 0.0
    # A term near zero is held to the loss's scale: 1e-3 vs 1.1e-3 next to a loss of 5 differs by 2e-5.
    near_zero = gpu_check.max_relative_difference([{"loss": 5.0, "me_max": 1e-3}], [{"loss": 5.0, "me_max": 1.1e-3}], 1)
    assert near_zero[0] == pytest.approx(1e-4 / 5.0) and "me_max" in near_zero[1]
    with pytest.raises(RuntimeError, match="loss terms differ"):
        gpu_check.max_relative_difference(reference, [{"loss": 2.0}], 1)


def test_device_side_draws_are_turned_off_only_for_the_cpu_comparison(gpu_check):
    from ssl_ext.config import compose_config

    msn = compose_config(["config=pretrain/msn/msn_cpu_tiny", "config.MODEL.TRUNK.PARAMS.drop_path_rate=0.1"])
    assert gpu_check.without_device_draws(msn) == ["MODEL.TRUNK.PARAMS.drop_path_rate=0"]
    assert msn.config.MODEL.TRUNK.PARAMS.patch_drop == 0.15  # masks come from the CPU generator on every device
    msbreg = compose_config(["config=pretrain/msbreg/msbreg_cpu_tiny"])
    assert gpu_check.without_device_draws(msbreg) == ["LOSS.PARAMS.brownian_weight=0"]
    assert msbreg.config.LOSS.PARAMS.brownian_weight == 0.0 and msbreg.config.LOSS.PARAMS.singular_value_weight == 0.004
    regularized = compose_config([
        "config=pretrain/simclr/simclr_cpu_tiny",
        "config.LOSS.REGULARIZERS=[{NAME: singular_value_loss, WEIGHT: 0.004}, {NAME: brownian_diffusive_loss, WEIGHT: 0.5}]",
    ])
    assert gpu_check.without_device_draws(regularized) == ["LOSS.REGULARIZERS without brownian_diffusive_loss"]
    assert [r.NAME for r in regularized.config.LOSS.REGULARIZERS] == ["singular_value_loss"]
    assert gpu_check.without_device_draws(compose_config(["config=pretrain/simclr/simclr_cpu_tiny"])) == []


def test_every_check_runs_on_the_cpu(gpu_check, tmp_path, capsys):
    """The whole script with --device cpu on one tiny config: the same code paths as on the GPU."""
    out = tmp_path / "out"
    status = gpu_check.main([
        "--device", "cpu", "--configs", "simclr_cpu_tiny", "--steps", "8", "--equal-steps", "2", "--eval-epochs", "1",
        "--bench-scale", "tiny", "--bench-batch", "16", "--bench-steps", "2", "--bench-warmup", "1",
        "--loss-cases", "simclr", "--loss-repeats", "1", "--loss-warmup", "0", "--augment-on", "loader", "--out", str(out),
    ])
    report = json.loads((out / "gpu_check.json").read_text())
    checks = {c["name"]: c for c in report["checks"]}
    assert list(checks) == ["train", "ddp", "eval", "trainer_vs_bare", "loss_speed"]
    # Every check ran without an error; all but the loss timings (one noisy repetition here) passed.
    problems = {name: [r for r in c["rows"] if r["status"] != "pass"] + c["errors"] for name, c in checks.items()}
    assert all(c["status"] == "pass" for name, c in checks.items() if name != "loss_speed"), problems
    assert checks["loss_speed"]["status"] in ("pass", "fail") and not checks["loss_speed"]["errors"], problems
    assert status == (0 if checks["loss_speed"]["status"] == "pass" else 1)

    train = {r["case"]: r for r in checks["train"]["rows"]}
    assert train["simclr_cpu_tiny equality"]["max_rel_diff"] == 0.0  # CPU vs CPU, same seed: bit for bit
    assert train["simclr_cpu_tiny fp32"]["loss_last_quarter"] < train["simclr_cpu_tiny fp32"]["loss_first_quarter"]
    assert train["simclr_cpu_tiny fp32"]["step_ms_median"] > 0
    ddp = {r["case"]: r for r in checks["ddp"]["rows"]}
    assert ddp["collectives"]["backend"] == "gloo"
    assert ddp["simclr_cpu_tiny ddp"]["max_rel_diff_first_steps"] == 0.0 and ddp["simclr_cpu_tiny ddp"]["checkpoint_written"]
    evaluation = {r["case"]: r for r in checks["eval"]["rows"]}
    assert checks["eval"]["summary"]["weights_from"] == "simclr_cpu_tiny (fp32)"  # the checkpoint the train check wrote
    assert evaluation["linear accuracy"]["max_gap"] == 0.0 and evaluation["knn accuracy"]["max_gap"] == 0.0
    assert evaluation["linear accuracy"]["grid_median_gap"] == 0.0  # every head of the lr x wd grid
    assert min(evaluation["torch knn"]["agreement"].values()) == 1.0
    assert checks["trainer_vs_bare"]["summary"]["overhead_ratio"] > 0
    assert {"ssl_ext trainer", "bare PyTorch"} == set(checks["trainer_vs_bare"]["summary"]["sides"])
    speed = checks["loss_speed"]["rows"][0]
    assert speed["case"] == "simclr_loss" and speed["agreement"].startswith("same")
    assert speed["ratio"] == pytest.approx(speed["ours_ms"] / speed["other_ms"])

    assert not list(out.glob(".*.partial"))  # rewritten after every check, atomically
    markdown = (out / "gpu_check.md").read_text()
    assert "## train: pass" in markdown and "| simclr_cpu_tiny fp32 | pass |" in markdown
    assert markdown in capsys.readouterr().out  # the table is printed too


def test_tf32_is_off_inside_the_comparison_and_restored_after(gpu_check):
    import torch

    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with gpu_check.tf32_disabled():
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before
