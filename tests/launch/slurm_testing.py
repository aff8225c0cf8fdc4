"""Helpers shared by the SLURM launcher tests (real cluster from tools/slurm_cluster.sh)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = REPO / "tools" / "slurm_cluster.sh"
PARTITION = "debug"

# The smallest real training: SimCLR on 16x16 synthetic images with a tiny CNN (configs_yaml/demo).
TINY_RUN = [
    "config=demo/tiny_synthetic",
    "+config/launcher@_global_=slurm_cpu",
    f"config.SLURM.PARTITION={PARTITION}",
    "config.SLURM.TIME_MINUTES=10",
    "config.SLURM.SIGNAL_DELAY_S=30",
    "config.HOOKS.LOG_FREQUENCY=1",
    "config.HOOKS.PLOT_CURVES=false",
    "config.HOOKS.MODEL_COMPLEXITY.ENABLED=false",
]


def cluster_unavailable_reason() -> Optional[str]:
    if os.geteuid() != 0:
        return "a real SLURM cluster needs root (it installs packages and starts system daemons)"
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        return "SLURM is not installed and there is no apt-get to install it"
    return None


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def sacct_states(job_id: str) -> List[str]:
    """Final-attempt states of a job (or of every task of an array job), from accounting."""
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "JobID,State"], capture_output=True, text=True, timeout=30,
    ).stdout
    return [line.split("|")[1].split()[0] for line in out.splitlines() if "|" in line]


def wait_for_states(job_id: str, expected: List[str], timeout: float = 60) -> None:
    """Accounting lags the result files by a few seconds (the job step is still ending)."""
    wait_until(lambda: sacct_states(job_id) == expected, timeout, f"sacct to show job {job_id} as {expected}", interval=0.5)


def wait_for_job(job, timeout: float) -> None:
    """Wait for a submitit job without ever hanging: cancel it and fail after ``timeout``."""
    deadline = time.time() + timeout
    while not job.done():
        if time.time() > deadline:
            subprocess.run(["scancel", str(job.job_id)], check=False)
            raise AssertionError(
                f"SLURM job {job.job_id} not done after {timeout:.0f} s (state {job.state}); cancelled. "
                f"stderr: {job.paths.stderr}"
            )
        time.sleep(0.5)


def iterations_logged(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return 0
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    try:
        return max((json.loads(line).get("iteration", 0) for line in lines), default=0)
    except json.JSONDecodeError:  # a line being written
        return 0


class SignalWhenTraining(threading.Thread):
    """Sends USR2 (SLURM's pre-time-limit signal) to every task of ``job`` once training passed
    ``min_iterations``; runs in the background so the job is caught mid-run whatever the test order."""

    def __init__(self, job, run_dir: Path, min_iterations: int, timeout: float):
        super().__init__(daemon=True)
        self.job, self.run_dir, self.min_iterations, self.timeout = job, run_dir, min_iterations, timeout
        self.reached: Optional[int] = None
        self.error: Optional[str] = None
        self.start()

    def run(self) -> None:
        try:
            wait_until(lambda: iterations_logged(self.run_dir) >= self.min_iterations or self.job.done(), self.timeout,
                       f"job {self.job.job_id} to reach iteration {self.min_iterations}", interval=0.1)
            if self.job.done():
                self.error = f"job {self.job.job_id} ended before it could be signalled; see {self.job.paths.stderr}"
                return
            self.reached = iterations_logged(self.run_dir)
            subprocess.run(["scancel", "--signal=USR2", str(self.job.job_id)], check=True, timeout=30)
        except Exception as exc:  # reported by result() in the test's thread
            self.error = str(exc)

    def result(self) -> int:
        """The iteration training had reached when the signal went out."""
        self.join(self.timeout)
        assert self.error is None and self.reached is not None, self.error or "signal watcher still running"
        return self.reached
