"""The SLURM launcher's pieces that need no cluster: sbatch parameters, dry runs, sweep expansion, requeue logic."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from ssl_ext.cli import main as cli_main
from ssl_ext.config import ConfigError, compose_config
from ssl_ext.engine import preemption
from ssl_ext.engine.train_engine import planned_iterations
from ssl_ext.launch.slurm import sbatch_parameters, training_job
from ssl_ext.launch.slurm_job import RequeueLimitReached, _defer_preemption_signal, rendezvous_port, task_placement
from ssl_ext.launch.sweep import expand, launch_sweep, split_sweep

TINY = ["config=demo/tiny_synthetic"]


def test_dry_run_prints_sbatch_script_and_config_and_submits_nothing(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = cli_main([
        *TINY, "+config/launcher@_global_=slurm_gpu_multinode", "config.SLURM.PARTITION=gpu",
        "config.SLURM.ADDITIONAL_PARAMETERS={reservation: r1}", f"config.CHECKPOINT.DIR={run_dir}", "--dry-run",
    ])
    out = capsys.readouterr().out
    assert code == 0
    for line in ["#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=8", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --cpus-per-task=10", "#SBATCH --partition=gpu", "#SBATCH --reservation=r1",
                 "#SBATCH --signal=USR2@120", "#SBATCH --time=4320",
                 f"#SBATCH --output={run_dir}/slurm_logs/%j_0_log.out"]:
        assert line in out
    assert "--kill-on-bad-exit=1" in out and "submitit.core._submit" in out
    config_part = out.split("# --- composed config ---", 1)[1]
    assert "NUM_NODES: 4" in config_part and "BACKEND: nccl" in config_part and f"DIR: {run_dir}" in config_part
    assert not run_dir.exists()


def test_dry_run_key_in_config_also_submits_nothing(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert cli_main([*TINY, "+config/launcher@_global_=slurm_cpu", "config.SLURM.DRY_RUN=true",
                     f"config.CHECKPOINT.DIR={run_dir}"]) == 0
    assert "#SBATCH --ntasks-per-node=2" in capsys.readouterr().out
    assert not run_dir.exists()


def _params(*overrides):
    return sbatch_parameters(compose_config([*TINY, "+config/launcher@_global_=slurm_cpu", *overrides]))


def test_sbatch_parameters_follow_the_config():
    params = _params("config.SLURM.CPUS_PER_TASK=0", "config.DATA.NUM_DATALOADER_WORKERS=3", "config.SLURM.MEM_GB=7.5",
                     "config.SLURM.QOS=high", "config.SLURM.EXCLUDE='node[1-2]'", "config.SLURM.TIME_MINUTES=90")
    assert params["cpus_per_task"] == 4  # 3 loader workers + the training process
    assert params["mem"] == "7680M"
    assert (params["qos"], params["exclude"], params["time"]) == ("high", "node[1-2]", 90)
    assert (params["nodes"], params["ntasks_per_node"]) == (1, 2)
    assert "partition" not in params and "gpus_per_node" not in params  # unset keys stay unset


@pytest.mark.parametrize("overrides, names", [
    (["config.SLURM.GPUS_PER_NODE=4"], ["GPUS_PER_NODE=4", "NUM_PROC_PER_NODE=2"]),
    (["config.SLURM.TIME_MINUTES=1", "config.SLURM.SIGNAL_DELAY_S=60"], ["SIGNAL_DELAY_S=60", "TIME_MINUTES=1"]),
    (["config.SLURM.ADDITIONAL_PARAMETERS=[a, b]"], ["ADDITIONAL_PARAMETERS"]),
    (["config.DISTRIBUTED.NUM_PROC_PER_NODE=0"], ["NUM_PROC_PER_NODE=0"]),
])
def test_bad_resource_keys_are_named(overrides, names):
    with pytest.raises(ConfigError) as info:
        _params(*overrides)
    for name in names:
        assert name in str(info.value)


def test_sweep_from_commas_and_file_is_the_cartesian_product(tmp_path):
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text("sweep:\n  config.LOSS.PARAMS.temperature: [0.1, 0.2]\n")
    overrides = [*TINY, f"config.CHECKPOINT.DIR={tmp_path}/runs", "config.OPTIMIZER.BASE_LR=0.1,0.3",
                 "config.MODEL.HEADS=[{NAME: mlp, PARAMS: {dims: [32, 16]}}]", f"sweep={sweep_file}"]
    base, axes = split_sweep(overrides)
    assert axes == [("config.OPTIMIZER.BASE_LR", ["0.1", "0.3"]), ("config.LOSS.PARAMS.temperature", ["0.1", "0.2"])]
    assert "config.MODEL.HEADS=[{NAME: mlp, PARAMS: {dims: [32, 16]}}]" in base  # a list is not a sweep
    runs = expand(overrides)
    assert [Path(r.run_dir).name for r in runs] == [
        "BASE_LR=0.1,temperature=0.1", "BASE_LR=0.1,temperature=0.2",
        "BASE_LR=0.3,temperature=0.1", "BASE_LR=0.3,temperature=0.2",
    ]
    assert [(r.cfg.config.OPTIMIZER.BASE_LR, r.cfg.config.LOSS.PARAMS.temperature) for r in runs] == [
        (0.1, 0.1), (0.1, 0.2), (0.3, 0.1), (0.3, 0.2)]
    assert all(r.cfg.config.CHECKPOINT.DIR == r.run_dir for r in runs)


def test_sweep_dry_run_shows_one_job_array(tmp_path, capsys):
    assert cli_main([*TINY, "+config/launcher@_global_=slurm_cpu", f"config.CHECKPOINT.DIR={tmp_path}/runs",
                     "config.OPTIMIZER.BASE_LR=0.1,0.2,0.3", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "#SBATCH --array=0-2%3" in out
    assert out.count("# run ") == 3 and f"{tmp_path}/runs/BASE_LR=0.2" in out
    assert not (tmp_path / "runs").exists()


def test_sweep_errors_name_the_problem(tmp_path):
    with pytest.raises(ConfigError, match="no such YAML file"):
        split_sweep([*TINY, f"sweep={tmp_path}/missing.yaml"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("config.OPTIMIZER.BASE_LR: [0.1]\n")
    with pytest.raises(ConfigError, match="'sweep:' mapping"):
        split_sweep([*TINY, f"sweep={bad}"])
    with pytest.raises(ConfigError, match="more than once"):
        split_sweep([*TINY, "config.SEED_VALUE=1,2", "config.SEED_VALUE=3,4"])
    with pytest.raises(ConfigError, match="different SLURM resources"):
        launch_sweep([*TINY, "+config/launcher@_global_=slurm_cpu", f"config.CHECKPOINT.DIR={tmp_path}",
                      "config.SLURM.CPUS_PER_TASK=1,2"], dry_run=True)


def test_rendezvous_ports_differ_between_jobs_sharing_a_node():
    assert rendezvous_port(40050, "12345") == 40050 + 345
    assert rendezvous_port(40050, "7") != rendezvous_port(40050, "8")


def test_usr2_only_requests_a_checkpoint_and_keeps_submitits_handler():
    calls = []

    def submitit_like_handler(signum, frame):
        calls.append(signum)

    previous = signal.signal(signal.SIGUSR2, submitit_like_handler)
    try:
        preemption.clear_request()
        kept = _defer_preemption_signal()
        os.kill(os.getpid(), signal.SIGUSR2)
        assert preemption.checkpoint_requested()
        assert calls == [] and kept is submitit_like_handler
    finally:
        signal.signal(signal.SIGUSR2, previous)
        preemption.clear_request()


def test_checkpoint_requeues_until_the_cap_then_explains(tmp_path):
    cfg = compose_config([*TINY, "+config/launcher@_global_=slurm_cpu", "config.SLURM.MAX_REQUEUES=2"])
    job = training_job(cfg, str(tmp_path))
    first = job.checkpoint()
    second = first.function.checkpoint()
    assert (first.function.requeues, second.function.requeues) == (1, 2)
    assert first.function.cfg_yaml == job.cfg_yaml and not first.args and not first.kwargs
    with pytest.raises(RequeueLimitReached, match="MAX_REQUEUES=2"):
        second.function.checkpoint()
    # DONE from a shorter plan: a relaunch with more epochs goes on, so it may requeue.
    (tmp_path / "DONE").write_text(json.dumps({"iteration": 8, "planned": {"NUM_EPOCHS": 1, "MAX_ITERATIONS": -1}}))
    assert job.checkpoint().function.requeues == 1
    (tmp_path / "DONE").write_text(json.dumps({"iteration": 8, "planned": planned_iterations(cfg)}))
    assert job.checkpoint() is None  # a finished run is never requeued


def test_task_placement_on_the_third_task_of_the_second_node(monkeypatch):
    # What SLURM exports to task 5 of a 2-node x 4-task job (what srun sets for each task).
    for name, value in {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "4242", "SLURM_NTASKS": "8",
                        "SLURM_JOB_NUM_NODES": "2", "SLURM_NODEID": "1", "SLURM_PROCID": "5", "SLURM_LOCALID": "1",
                        "SLURM_JOB_NODELIST": "gpu[07-08]"}.items():
        monkeypatch.setenv(name, value)
    place = task_placement(port_base=40050)
    assert (place.rank, place.world_size, place.local_rank) == (5, 8, 1)
    assert place.init_method == "tcp://gpu07:40292"  # the first node hosts rank 0's store
