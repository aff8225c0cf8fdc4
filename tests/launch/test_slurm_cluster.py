"""The SLURM launcher on a real single-node cluster (tools/slurm_cluster.sh).

Every job is submitted up front by one module fixture, so the cluster works on
all of them at once and the whole file stays within its time budget; each test
then waits for (and checks) its own job.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
import torch

from ssl_ext.config import compose_config
from ssl_ext.launch.slurm import SlurmLaunchError, launch_on_slurm
from ssl_ext.utils.io import torch_load
from slurm_testing import (
    CLUSTER_SCRIPT, REPO, TINY_RUN, SignalWhenTraining, wait_for_job, wait_for_states, wait_until,
)

# 128 images, 16 per rank: 4 updates per epoch on 2 ranks. No epoch checkpoints, so the only
# checkpoint before the final one is the one written when the job is signalled.
LONG_RUN = ["config.OPTIMIZER.NUM_EPOCHS=8", "config.CHECKPOINT.CHECKPOINT_FREQUENCY=0"]
# MSN (ViT with patch drop, EMA teacher, prototypes, Sinkhorn over both ranks) on a quarter of digits:
# 3 updates per epoch on 2 ranks, 12 in all; deterministic so the comparison can be bit for bit.
MSN_RUN = ["config=pretrain/msn/msn_cpu_tiny", "++config.DATA.TRAIN.SOURCE_PARAMS.train_fraction=0.25",
           "config.OPTIMIZER.NUM_EPOCHS=4", "config.CHECKPOINT.CHECKPOINT_FREQUENCY=-1", "config.DETERMINISTIC=true",
           "config.MACHINE.DEVICE=cpu", "config.MACHINE.NUM_THREADS=1", "config.HOOKS.EXTRA=[]"]
JOB_TIMEOUT_S = 200


@dataclass
class Launched:
    root: Path
    jobs: Dict[str, Tuple[Any, Path]] = field(default_factory=dict)
    submit_times: Dict[str, float] = field(default_factory=dict)
    sweep: subprocess.Popen = None
    sweep_dir: Path = None
    signals: Dict[str, SignalWhenTraining] = field(default_factory=dict)


@pytest.fixture(scope="module")
def launched(slurm_cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm_runs")
    state = Launched(root)
    # The sweep goes through the command line (as a user would), in the background.
    state.sweep_dir = root / "sweep"
    state.sweep = subprocess.Popen(
        [sys.executable, str(REPO / "tools" / "run_distributed_engines.py"), *TINY_RUN,
         f"config.CHECKPOINT.DIR={state.sweep_dir}", "config.DISTRIBUTED.NUM_PROC_PER_NODE=1",
         "config.OPTIMIZER.BASE_LR=0.05,0.1"],
        cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )

    def submit(name: str, *extra: str) -> None:
        run_dir = root / name
        base = [o for o in TINY_RUN if not o.startswith("config=")] if any(e.startswith("config=") for e in extra) else TINY_RUN
        cfg = compose_config([*base, f"config.CHECKPOINT.DIR={run_dir}", *extra])
        state.submit_times[name] = time.time()
        [job] = launch_on_slurm(cfg, [])
        state.jobs[name] = (job, run_dir)

    try:
        # Asking for CUDA on a CPU node: the engine raises as soon as the task starts.
        submit("failing", "config.MACHINE.DEVICE=cuda", "config.DISTRIBUTED.NUM_PROC_PER_NODE=1")
        submit("preempted", *LONG_RUN)
        state.signals["preempted"] = SignalWhenTraining(*state.jobs["preempted"], min_iterations=3, timeout=JOB_TIMEOUT_S)
        submit("capped", *LONG_RUN, "config.SLURM.MAX_REQUEUES=0", "config.DISTRIBUTED.NUM_PROC_PER_NODE=1")
        state.signals["capped"] = SignalWhenTraining(*state.jobs["capped"], min_iterations=2, timeout=JOB_TIMEOUT_S)
        submit("reference", *LONG_RUN)
        submit("msn_preempted", *MSN_RUN)
        state.signals["msn_preempted"] = SignalWhenTraining(*state.jobs["msn_preempted"], min_iterations=3, timeout=JOB_TIMEOUT_S)
        submit("msn_reference", *MSN_RUN)
        yield state
    finally:
        for job, _ in state.jobs.values():
            subprocess.run(["scancel", str(job.job_id)], check=False)
        if state.sweep.poll() is None:
            state.sweep.kill()


def final_model(run_dir: Path) -> Dict[str, torch.Tensor]:
    done = json.loads((run_dir / "DONE").read_text())
    return torch_load(done["final_checkpoint"])["model"]


def test_two_rank_training_finishes_with_metrics_and_checkpoint(launched):
    job, run_dir = launched.jobs["reference"]
    wait_for_job(job, JOB_TIMEOUT_S)
    results = job.results()  # one per task: both gloo ranks ran the engine
    assert [r["iteration"] for r in results] == [32, 32]
    wait_for_states(str(job.job_id), ["COMPLETED"])
    done = json.loads((run_dir / "DONE").read_text())
    assert done["iteration"] == 32
    assert Path(done["final_checkpoint"]).is_file()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if "loss" in r][-1] == 32
    assert (run_dir / "train_config.yaml").is_file()


def test_preempted_job_checkpoints_requeues_and_resumes_exactly(launched):
    job, run_dir = launched.jobs["preempted"]
    reached = launched.signals["preempted"].result()
    wait_for_job(job, JOB_TIMEOUT_S)
    assert [r["iteration"] for r in job.results()] == [32, 32]
    wait_for_states(str(job.job_id), ["COMPLETED"])

    [stop] = [json.loads(line) for line in (run_dir / "preemptions.jsonl").read_text().splitlines()]
    assert reached <= stop["iteration"] < 32, stop
    assert stop["checkpoint"].endswith(f"model_iteration{stop['iteration']:08d}.torch")
    log = Path(job.paths.stderr).read_text()
    assert "Requeued job" in log
    resumed = re.findall(r"Resumed from (\S+) \(epoch \d+, iteration (\d+)\)", log)
    assert resumed == [(stop["checkpoint"], str(stop["iteration"]))]
    restarts = subprocess.run(["scontrol", "-o", "show", "job", str(job.job_id)], capture_output=True, text=True).stdout
    assert "Restarts=1" in restarts or not restarts  # the record may already be purged (MinJobAge)

    reference_job, reference_dir = launched.jobs["reference"]
    wait_for_job(reference_job, JOB_TIMEOUT_S)
    resumed_weights, uninterrupted = final_model(run_dir), final_model(reference_dir)
    assert resumed_weights.keys() == uninterrupted.keys()
    for name, value in uninterrupted.items():
        assert torch.equal(resumed_weights[name], value), f"{name} differs from the uninterrupted run"


def test_requeued_msn_on_two_tasks_matches_the_uninterrupted_run_bit_for_bit(launched):
    """The teacher-based flagship: every logged loss term of every step, and every tensor of the final
    checkpoint (student, EMA teacher, prototypes, optimizer moments), equal after a SLURM requeue."""
    job, run_dir = launched.jobs["msn_preempted"]
    reached = launched.signals["msn_preempted"].result()
    reference_job, reference_dir = launched.jobs["msn_reference"]
    wait_for_job(job, JOB_TIMEOUT_S)
    wait_for_job(reference_job, JOB_TIMEOUT_S)
    assert [r["iteration"] for r in job.results()] == [12, 12]
    [stop] = [json.loads(line) for line in (run_dir / "preemptions.jsonl").read_text().splitlines()]
    assert reached <= stop["iteration"] < 12 and "Requeued job" in Path(job.paths.stderr).read_text()

    def steps(directory):
        records = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]
        wall_clock = ("sec", "img", "time", "eta")
        return [{k: v for k, v in r.items() if not any(w in k for w in wall_clock)} for r in records if "loss" in r]

    assert [r["iteration"] for r in steps(run_dir)] == list(range(1, 13))
    assert steps(run_dir) == steps(reference_dir)
    final = torch_load(json.loads((run_dir / "DONE").read_text())["final_checkpoint"])
    expected = torch_load(json.loads((reference_dir / "DONE").read_text())["final_checkpoint"])
    for part in ("model", "teacher", "loss", "optimizer"):
        _assert_same_tensors(final[part], expected[part], part)


def _assert_same_tensors(a, b, where):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_requeue_cap_stops_the_job_with_its_reason(launched):
    job, run_dir = launched.jobs["capped"]
    launched.signals["capped"].result()
    wait_for_job(job, JOB_TIMEOUT_S)
    error = job.exception()
    assert error is not None and "MAX_REQUEUES=0" in str(error), error
    wait_for_states(str(job.job_id), ["FAILED"])
    [stop] = [json.loads(line) for line in (run_dir / "preemptions.jsonl").read_text().splitlines()]
    assert Path(stop["checkpoint"]).is_file()  # the work done so far is kept for a relaunch
    assert not (run_dir / "DONE").exists()


def test_failing_job_shows_as_failed_with_its_error_quickly(launched):
    job, _ = launched.jobs["failing"]
    wait_for_job(job, 120)
    elapsed = time.time() - launched.submit_times["failing"]
    error = job.exception()
    assert error is not None and "no CUDA device is visible" in str(error)
    wait_for_states(str(job.job_id), ["FAILED"])
    assert elapsed < 120


def test_sweep_of_two_values_gives_two_finished_runs(launched):
    out, err = launched.sweep.communicate(timeout=JOB_TIMEOUT_S)
    assert launched.sweep.returncode == 0, err
    [summary_path] = launched.sweep_dir.glob("sweep_*.json")
    summary = json.loads(summary_path.read_text())
    runs = summary["runs"]
    assert sorted(Path(r["run_dir"]).name for r in runs) == ["BASE_LR=0.05", "BASE_LR=0.1"]
    assert sorted(r["job_id"] for r in runs) == [f"{summary['array_job_id']}_0", f"{summary['array_job_id']}_1"]
    assert f"scancel {summary['array_job_id']}" in out
    for run in runs:
        wait_until(lambda: (Path(run["run_dir"]) / "DONE").exists(), JOB_TIMEOUT_S, f"{run['run_dir']}/DONE")
        lr = json.loads((Path(run["run_dir"]) / "metrics.jsonl").read_text().splitlines()[0])["lr"]
        assert lr == pytest.approx(float(run["overrides"][0].split("=")[1]))
    wait_for_states(summary["array_job_id"], ["COMPLETED", "COMPLETED"])


def test_relaunching_a_finished_run_does_nothing(launched, capsys):
    job, run_dir = launched.jobs["reference"]
    wait_for_job(job, JOB_TIMEOUT_S)
    assert (run_dir / "DONE").exists()
    cfg = compose_config([*TINY_RUN, f"config.CHECKPOINT.DIR={run_dir}", *LONG_RUN])
    assert launch_on_slurm(cfg, []) == []
    assert "already finished" in capsys.readouterr().out


def _submit_expecting_error(tmp_path, *overrides: str) -> str:
    cfg = compose_config([*TINY_RUN, f"config.CHECKPOINT.DIR={tmp_path / 'run'}", *overrides])
    with pytest.raises(SlurmLaunchError) as info:
        launch_on_slurm(cfg, [])
    return str(info.value)


def test_missing_partition_shows_slurms_message(slurm_cluster, tmp_path):
    message = _submit_expecting_error(tmp_path, "config.SLURM.PARTITION=no_such_partition")
    assert "invalid partition specified: no_such_partition" in message.lower()


@pytest.mark.parametrize("overrides, slurm_says", [
    # sbatch itself refuses: no node has that much memory.
    (["config.SLURM.MEM_GB=100000"], "Memory specification can not be satisfied"),
    # sbatch accepts, but the job could only pend forever: it is cancelled and reported.
    (["config.DISTRIBUTED.NUM_NODES=3"], "Reason=PartitionConfig"),
])
def test_impossible_request_is_an_error_not_a_hang(slurm_cluster, tmp_path, overrides, slurm_says):
    started = time.time()
    message = _submit_expecting_error(tmp_path, *overrides)
    assert slurm_says in message
    assert time.time() - started < 30
    job_ids: List[str] = re.findall(r"job (\d+)", message)
    for job_id in job_ids:
        assert subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True).stdout.strip() == ""


def test_cluster_script_is_idempotent_and_reports_status(slurm_cluster):
    started = time.time()
    again = subprocess.run([str(CLUSTER_SCRIPT), "start"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "already running: nothing to do" in again.stdout, again.stdout + again.stderr
    assert time.time() - started < 10
    status = subprocess.run([str(CLUSTER_SCRIPT), "status"], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and "accounting: cluster ssl_ext registered" in status.stdout
    partitions = subprocess.run(["sinfo", "-h", "-o", "%P %a"], capture_output=True, text=True).stdout.split()
    assert partitions[:2] == [f"{slurm_cluster}*", "up"]
