"""Trainer behaviour on real (tiny) training runs: learning, DDP equivalence, exact resume,
corrupt checkpoints, NaN stop."""
import json
import os

import pytest
import torch

from ssl_ext.config import compose_config
from ssl_ext.engine import checkpoint as ckpt
from ssl_ext.engine import preemption
from ssl_ext.launch.local import launch
from ssl_ext.utils.io import torch_load

import tests.engine._plugins as test_plugins  # noqa: F401  (registers the test hooks)

TINY = "config=demo/tiny_synthetic"


def run(run_dir, *overrides):
    cfg = compose_config([TINY, f"config.CHECKPOINT.DIR={run_dir}", "config.HOOKS.MODEL_COMPLEXITY.ENABLED=false",
                          "config.HOOKS.PLOT_CURVES=false", *overrides])
    return launch(cfg)


def losses(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [(r["iteration"], r["loss"]) for r in records if "loss" in r]


def final_weights(run_dir):
    (_, path), *_ = ckpt.list_checkpoints(str(run_dir))
    return torch_load(path)["model"]


def assert_same_weights(a, b, exact=True, atol=0.0):
    assert a.keys() == b.keys()
    for key in a:
        if exact:
            assert torch.equal(a[key], b[key]), key
        else:
            torch.testing.assert_close(a[key], b[key], atol=atol, rtol=1e-4, msg=key)


def test_short_training_lowers_the_loss(tmp_path):
    summary = run(tmp_path, "config.OPTIMIZER.NUM_EPOCHS=6", "config.HOOKS.LOG_FREQUENCY=1", "config.OPTIMIZER.BASE_LR=0.2")
    assert summary["iteration"] == 6 * (128 // 16)
    values = [loss for _, loss in losses(tmp_path)]
    first, last = sum(values[:8]) / 8, sum(values[-8:]) / 8
    assert last < first - 0.2, (first, last)
    assert os.path.exists(tmp_path / "DONE") and os.path.exists(tmp_path / "train_config.yaml")


# A BatchNorm-free model: per-rank BN statistics would differ from the global batch's by design
# (SyncBatchNorm needs CUDA), so DDP equivalence is checked on a LayerNorm ViT with a BN-free head.
NO_BN_MODEL = [
    "config.MODEL.TRUNK.NAME=vit",
    "~config.MODEL.TRUNK.PARAMS",
    "+config.MODEL.TRUNK.PARAMS={preset: custom, img_size: 16, patch_size: 4, embed_dim: 16, depth: 1, num_heads: 2, patch_drop: 0.0}",
    "config.MODEL.HEADS=[{NAME: mlp, PARAMS: {dims: [16, 8], use_bn: false}}]",
]


def test_two_gloo_processes_match_one_process_on_the_same_global_batch(tmp_path):
    common = [*NO_BN_MODEL, "config.OPTIMIZER.MAX_ITERATIONS=3", "config.HOOKS.LOG_FREQUENCY=1", "config.OPTIMIZER.NUM_EPOCHS=1"]
    run(tmp_path / "one", *common, "config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=16")
    run(tmp_path / "two", *common, "config.DATA.TRAIN.BATCHSIZE_PER_REPLICA=8", "config.DISTRIBUTED.NUM_PROC_PER_NODE=2")
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert [i for i, _ in one] == [i for i, _ in two] == [1, 2, 3]
    for (_, a), (_, b) in zip(one, two):
        assert abs(a - b) < 1e-5, (one, two)
    # Equal weights after 3 SGD steps with momentum means equal gradients at every step.
    assert_same_weights(final_weights(tmp_path / "one"), final_weights(tmp_path / "two"), exact=False, atol=1e-6)


RESUME = ["config.DETERMINISTIC=true", "config.HOOKS.LOG_FREQUENCY=1", "config.CHECKPOINT.CHECKPOINT_ITER_FREQUENCY=3",
          "config.CHECKPOINT.KEEP_LAST=0", "config.OPTIMIZER.NUM_EPOCHS=2", "config.DATA.NUM_DATALOADER_WORKERS=2",
          "config.MODEL.EMA_TEACHER.ENABLED=true"]


def test_resume_after_a_crash_mid_epoch_is_bit_exact(tmp_path):
    run(tmp_path / "straight", *RESUME)
    with pytest.raises(Exception, match="simulated crash at iteration 7"):
        run(tmp_path / "crashed", *RESUME, "config.HOOKS.EXTRA=[{NAME: test_crash_at, PARAMS: {iteration: 7}}]")
    assert [i for i, _ in ckpt.list_checkpoints(str(tmp_path / "crashed"))] == [6, 3]
    assert not os.path.exists(tmp_path / "crashed" / "DONE")
    summary = run(tmp_path / "crashed", *RESUME)
    assert summary["iteration"] == 16
    assert losses(tmp_path / "crashed") == losses(tmp_path / "straight")
    assert_same_weights(final_weights(tmp_path / "straight"), final_weights(tmp_path / "crashed"))
    teacher_a = torch_load(ckpt.list_checkpoints(str(tmp_path / "straight"))[0][1])["teacher"]
    teacher_b = torch_load(ckpt.list_checkpoints(str(tmp_path / "crashed"))[0][1])["teacher"]
    assert_same_weights(teacher_a, teacher_b)


def test_stop_request_saves_at_that_iteration_and_resume_is_exact(tmp_path):
    run(tmp_path / "straight", *RESUME)
    with pytest.raises(preemption.Preempted) as info:
        run(tmp_path / "preempted", *RESUME, "config.HOOKS.EXTRA=[{NAME: test_preempt_at, PARAMS: {iteration: 5}}]")
    preemption.clear_request()
    assert info.value.iteration == 5 and info.value.checkpoint_path.endswith("model_iteration00000005.torch")
    run(tmp_path / "preempted", *RESUME)
    assert losses(tmp_path / "preempted") == losses(tmp_path / "straight")
    assert_same_weights(final_weights(tmp_path / "straight"), final_weights(tmp_path / "preempted"))


def test_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    run(tmp_path / "straight", *RESUME)
    with pytest.raises(Exception, match="simulated crash"):
        run(tmp_path / "crashed", *RESUME, "config.HOOKS.EXTRA=[{NAME: test_crash_at, PARAMS: {iteration: 7}}]")
    newest = ckpt.checkpoint_path(str(tmp_path / "crashed"), 6)
    with open(newest, "r+b") as f:  # a half-written file, as after a full disk or a copy cut short
        f.truncate(os.path.getsize(newest) // 2)
    with caplog.at_level("WARNING"):
        run(tmp_path / "crashed", *RESUME)
    assert any("model_iteration00000006.torch" in r.message and "unreadable" in r.message for r in caplog.records)
    assert losses(tmp_path / "crashed") == losses(tmp_path / "straight")
    assert_same_weights(final_weights(tmp_path / "straight"), final_weights(tmp_path / "crashed"))


def test_injected_nan_stops_with_step_terms_and_last_checkpoint(tmp_path):
    with pytest.raises(FloatingPointError) as info:
        run(tmp_path, "config.CHECKPOINT.CHECKPOINT_ITER_FREQUENCY=2",
            "config.HOOKS.EXTRA=[{NAME: test_poison_weights_at, PARAMS: {iteration: 3}}]")
    message = str(info.value)
    assert "iteration 3" in message and "loss=nan" in message
    assert "model_iteration00000002.torch" in message
    # Nothing non-finite reached a checkpoint on disk.
    saved = torch_load(ckpt.checkpoint_path(str(tmp_path), 2))["model"]
    assert all(torch.isfinite(v).all() for v in saved.values() if v.is_floating_point())


def test_relaunching_a_finished_run_does_nothing(tmp_path, caplog):
    run(tmp_path, "config.OPTIMIZER.MAX_ITERATIONS=2")
    before = os.path.getmtime(tmp_path / "metrics.jsonl")
    with caplog.at_level("WARNING"):
        result = run(tmp_path, "config.OPTIMIZER.MAX_ITERATIONS=2")
    assert result["already_finished"] is True
    assert os.path.getmtime(tmp_path / "metrics.jsonl") == before
    assert any("already finished" in r.message for r in caplog.records)
