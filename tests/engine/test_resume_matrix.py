"""The resume contract, for every method: a run SIGKILLed (whole process group) mid-epoch and at
an epoch boundary, then relaunched with the same command, logs the same loss terms at every step
and ends with the same tensors (student, teacher, loss parameters, optimizer state) as an
uninterrupted run, bit for bit, on 1 and 2 processes.

The methods are every ``configs_yaml/pretrain/*/*cpu_tiny*.yaml``: a method added later joins
without editing this file.
"""
import glob
import os

import pytest
from omegaconf import OmegaConf

from ssl_ext.config import compose_config
from tests.engine.resume_harness import (
    REPO, assert_bitwise_equal, count_tensors, final_state, launch_cli, metrics, start_cli, wait_cli,
)

CONFIGS = sorted(
    os.path.relpath(path, os.path.join(REPO, "configs_yaml"))[: -len(".yaml")]
    for path in glob.glob(os.path.join(REPO, "configs_yaml", "pretrain", "*", "*cpu_tiny*.yaml"))
)
# Kill points ([event, epoch, step_in_epoch]): after the 3rd update of epoch 0, whose newest
# checkpoint is iteration 2 (mid-epoch resume: that update is lost and redone); and in the first
# forward of epoch 1, whose newest checkpoint is the end of epoch 0 (epoch-boundary resume).
MID_EPOCH = ["on_update", 0, 3]
EPOCH_BOUNDARY = ["on_forward", 1, 0]


def data_overrides(config: str, world_size: int) -> list:
    """Overrides that make an epoch 3 steps long, so both kill points come early and cheaply."""
    from ssl_ext.data.build import build_raw_dataset

    base = compose_config([f"config={config}"])
    batch = int(base.config.DATA.TRAIN.BATCHSIZE_PER_REPLICA)
    args = []
    if list(base.config.DATA.TRAIN.DATA_SOURCES) == ["digits"]:
        fraction = float(base.config.DATA.TRAIN.SOURCE_PARAMS.get("train_fraction", 0.8))
        size = len(build_raw_dataset(base, "TRAIN"))
        wanted = min(fraction, fraction * 3.5 * batch * world_size / size)
        args.append(f"++config.DATA.TRAIN.SOURCE_PARAMS.train_fraction={wanted:.4f}")
        base = compose_config([f"config={config}", args[-1]])
    size = len(build_raw_dataset(base, "TRAIN"))
    if size // (batch * world_size) < 3:
        batch = max(4, size // (3 * world_size))
        args.append(f"config.DATA.TRAIN.BATCHSIZE_PER_REPLICA={batch}")
    assert size // (batch * world_size) >= 3, (config, size, batch)
    return args


def overrides(config: str, world_size: int, extra: tuple = ()):
    """The command of one matrix cell, as a function of its run directory and extra hooks."""
    base = compose_config([f"config={config}"])
    args = [
        f"config={config}",
        f"config.DISTRIBUTED.NUM_PROC_PER_NODE={world_size}",
        "config.DETERMINISTIC=true",
        "config.MACHINE.DEVICE=cpu",
        "config.MACHINE.NUM_THREADS=1",
        "config.OPTIMIZER.NUM_EPOCHS=2",
        "config.OPTIMIZER.MAX_ITERATIONS=-1",
        "config.CHECKPOINT.CHECKPOINT_ITER_FREQUENCY=2",
        "config.CHECKPOINT.CHECKPOINT_FREQUENCY=1",
        "config.CHECKPOINT.KEEP_LAST=0",
        "config.HOOKS.LOG_FREQUENCY=1",
        "config.HOOKS.PROGRESS_BAR=off",
        "config.HOOKS.PLOT_CURVES=false",
        "config.HOOKS.MODEL_COMPLEXITY.ENABLED=false",
        "config.PLUGINS=[tests.engine.kill_hook]",
        # Ranks forked from the launcher start in milliseconds; spawn is exercised by the SLURM and DDP tests.
        "config.DISTRIBUTED.START_METHOD=fork",
        *data_overrides(config, world_size),
        *extra,
    ]
    config_hooks = OmegaConf.to_container(base.config.HOOKS.EXTRA)

    def command(run_dir: str, extra_hooks: list) -> list:
        return [*args, f"config.CHECKPOINT.DIR={run_dir}", "config.HOOKS.EXTRA=" + _hydra_value(config_hooks + extra_hooks)]

    return command


def _hydra_value(value) -> str:
    """A Python value in hydra's override grammar (strings quoted)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_hydra_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_hydra_value(v) for v in value) + "]"
    if isinstance(value, str):
        return "'" + value + "'"
    return str(value).lower() if isinstance(value, bool) else str(value)


# The batched augmentation path (views cut on the training device from decoded images) joins the
# matrix with the method whose multi-crop it exists for.
DEVICE_AUGMENT = [("pretrain/msn/msn_cpu_tiny", ("config.DATA.TRAIN.AUGMENT_ON=device",))]
CELLS = [(config, ()) for config in CONFIGS] + DEVICE_AUGMENT


@pytest.mark.parametrize("world_size", [1, 2])
@pytest.mark.parametrize("config,extra", CELLS, ids=[c + ("+" + "+".join(e) if e else "") for c, e in CELLS])
def test_sigkill_and_relaunch_continue_bit_for_bit(config, extra, world_size, tmp_path):
    reference_dir, killed_dir = str(tmp_path / "uninterrupted"), str(tmp_path / "killed")
    log, reference_log = str(tmp_path / "log.txt"), str(tmp_path / "reference_log.txt")
    command = overrides(config, world_size, extra)
    # The uninterrupted run goes alongside the killed one (each rank uses one thread).
    reference = start_cli(command(reference_dir, []), reference_log)

    kill_hook = {"NAME": "sigkill_process_group",
                 "PARAMS": {"points": [MID_EPOCH, EPOCH_BOUNDARY], "marker_dir": str(tmp_path / "kills")}}
    exit_codes = [launch_cli(command(killed_dir, [kill_hook]), log) for _ in range(3)]
    assert exit_codes == [-9, -9, 0], (exit_codes, open(log).read()[-3000:])
    assert wait_cli(reference) == 0, open(reference_log).read()[-3000:]
    assert sorted(os.listdir(tmp_path / "kills")) == ["killed_at_on_forward_1_0", "killed_at_on_update_0_3"]

    expected, got = metrics(reference_dir), metrics(killed_dir)
    assert len(expected) >= 6 and [r["iteration"] for r in got] == [r["iteration"] for r in expected]
    for want, have in zip(expected, got):
        assert have == want, f"step {want['iteration']}: {have} != {want}"
    reference_state = final_state(reference_dir)
    assert count_tensors(reference_state["model"]) > 0
    assert_bitwise_equal(final_state(killed_dir), reference_state, "checkpoint")
