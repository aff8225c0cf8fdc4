"""Send a run (or a sweep of runs) to SLURM through submitit.

Usage (``config.SLURM.*`` keys are documented in configs_yaml/defaults.yaml)::

    python tools/run_distributed_engines.py config=demo/tiny_synthetic \\
        +config/launcher@_global_=slurm_cpu config.SLURM.PARTITION=debug
    ... --dry-run                                  # print the sbatch script and the config; submit nothing
    ... config.OPTIMIZER.BASE_LR=0.1,0.3           # sweep: a job array, one run dir per value
    ... sweep=my_sweep.yaml                         # sweep from a YAML file (see ssl_ext/launch/sweep.py)

The launcher presets in configs_yaml/launcher/ (slurm_cpu, slurm_gpu,
slurm_gpu_multinode) only set ``MACHINE``/``DISTRIBUTED``/``SLURM`` keys; add one
to any run as above, or list it in a run YAML's ``defaults:``
(``- /config/launcher/slurm_gpu@_here_``), or set ``config.SLURM.USE_SLURM=true``
and the keys yourself.

One SLURM task per process: ``DISTRIBUTED.NUM_NODES`` nodes times
``DISTRIBUTED.NUM_PROC_PER_NODE`` tasks per node (one per GPU when
``SLURM.GPUS_PER_NODE`` > 0). Each task computes its rank from SLURM's variables
and runs the engine (``ssl_ext/launch/slurm_job.py``). The launcher prints the
job id, the log files and the commands to follow (``tail -f``, ``squeue``,
``sacct``) and cancel (``scancel``) the job; the logs and submitit's pickles go
to ``SLURM.LOG_FOLDER`` (default ``<CHECKPOINT.DIR>/slurm_logs``).

Preemption and time limits: SLURM signals the job (USR2) ``SLURM.SIGNAL_DELAY_S``
seconds before its time limit; the trainer saves a checkpoint at the current
iteration and the job requeues itself, at most ``SLURM.MAX_REQUEUES`` times, and
resumes exactly. A finished run (``<CHECKPOINT.DIR>/DONE`` records the same
epochs/iterations) is not submitted again: the launcher says so and does
nothing; asking for more epochs continues it from its last checkpoint.

Errors: a missing partition, an impossible resource request or any sbatch
failure raises :class:`SlurmLaunchError` carrying SLURM's own message; a job
that SLURM accepts but can never start (e.g. Reason=PartitionConfig) is
cancelled and reported the same way instead of pending forever.

Trying it on a workstation: ``sudo tools/slurm_cluster.sh start`` installs and
starts a single-node cluster (partition ``debug``) with accounting.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from ssl_ext.config import ConfigError
from ssl_ext.launch.slurm_job import SlurmTrainingJob, finished_run

# squeue reasons that no amount of waiting fixes: the request does not fit the partition/account.
HOPELESS_PENDING_REASONS = {
    "PartitionConfig", "BadConstraints", "PartitionNodeLimit", "PartitionTimeLimit",
    "InvalidAccount", "InvalidQOS", "AccountNotAllowed", "QOSNotAllowed",
}
# How long to watch a freshly submitted job for one of those reasons.
PENDING_CHECK_S = 3.0
_REQUEST_FIELDS = re.compile(r"JobState=|Partition=|NumNodes=|TRES=|MinCPUsNode=|TimeLimit=|Features=")
SRUN_ARGS = ["--kill-on-bad-exit=1"]  # one crashed rank must end the job, not leave the others in a collective


class SlurmLaunchError(ConfigError):
    """SLURM refused or cannot run the job; the message carries SLURM's own words.

    A ConfigError because the fix is in ``config.SLURM.*`` (or the cluster), so the
    command line reports it as a plain error instead of a traceback.
    """


def is_remote_path(path: str) -> bool:
    return "://" in path


def absolute_run_dir(cfg: DictConfig) -> str:
    """CHECKPOINT.DIR as an absolute path: the job may start in another directory."""
    run_dir = str(cfg.config.CHECKPOINT.DIR)
    return run_dir if is_remote_path(run_dir) else os.path.abspath(os.path.expanduser(run_dir))


def log_folder(cfg: DictConfig, run_dir: str) -> str:
    folder = str(cfg.config.SLURM.LOG_FOLDER)
    return os.path.abspath(os.path.expanduser(folder)) if folder else os.path.join(run_dir, "slurm_logs")


def _mem_string(mem_gb: float) -> str:
    return f"{int(round(mem_gb * 1024))}M"


def sbatch_parameters(cfg: DictConfig) -> Dict[str, Any]:
    """submitit SlurmExecutor parameters (sbatch's names) from ``config.SLURM`` and ``config.DISTRIBUTED``."""
    slurm, dist = cfg.config.SLURM, cfg.config.DISTRIBUTED
    nodes, per_node = int(dist.NUM_NODES), int(dist.NUM_PROC_PER_NODE)
    if nodes < 1 or per_node < 1:
        raise ConfigError(
            f"config.DISTRIBUTED.NUM_NODES={nodes} and NUM_PROC_PER_NODE={per_node} must both be at least 1 on SLURM."
        )
    gpus = int(slurm.GPUS_PER_NODE)
    if gpus < 0 or (gpus > 0 and gpus != per_node):
        raise ConfigError(
            f"config.SLURM.GPUS_PER_NODE={gpus} but config.DISTRIBUTED.NUM_PROC_PER_NODE={per_node}: "
            f"there is one process per GPU, so set both to the number of GPUs per node (or GPUS_PER_NODE=0 on CPU)."
        )
    cpus = int(slurm.CPUS_PER_TASK) or int(cfg.config.DATA.NUM_DATALOADER_WORKERS) + 1
    minutes = int(slurm.TIME_MINUTES)
    delay = int(slurm.SIGNAL_DELAY_S)
    if minutes < 1:
        raise ConfigError(f"config.SLURM.TIME_MINUTES={minutes}: must be at least 1.")
    if not 0 <= delay < minutes * 60:
        raise ConfigError(
            f"config.SLURM.SIGNAL_DELAY_S={delay}: must be between 0 and the time limit "
            f"(config.SLURM.TIME_MINUTES={minutes} minutes = {minutes * 60} s)."
        )
    params: Dict[str, Any] = {
        "job_name": str(slurm.NAME),
        "time": minutes,
        "nodes": nodes,
        "ntasks_per_node": per_node,
        "cpus_per_task": cpus,
        "signal_delay_s": delay,
        "array_parallelism": int(slurm.ARRAY_PARALLELISM),
        "srun_args": list(SRUN_ARGS),
    }
    if gpus:
        params["gpus_per_node"] = gpus
    if float(slurm.MEM_GB) > 0:
        params["mem"] = _mem_string(float(slurm.MEM_GB))
    for key, name in (("PARTITION", "partition"), ("CONSTRAINT", "constraint"), ("COMMENT", "comment"),
                      ("ACCOUNT", "account"), ("QOS", "qos"), ("EXCLUDE", "exclude")):
        if str(slurm[key]):
            params[name] = str(slurm[key])
    if slurm.SETUP:
        params["setup"] = [str(line) for line in slurm.SETUP]
    extra = slurm.ADDITIONAL_PARAMETERS
    if extra is not None:
        if not isinstance(extra, DictConfig):
            raise ConfigError(
                f"config.SLURM.ADDITIONAL_PARAMETERS={extra!r}: expected a mapping of sbatch options, "
                f"e.g. {{reservation: my_res, mail-type: END}}."
            )
        params["additional_parameters"] = {str(k): v for k, v in OmegaConf.to_container(extra, resolve=True).items()}
    return params


def training_job(cfg: DictConfig, run_dir: str) -> SlurmTrainingJob:
    cfg = cfg.copy()
    cfg.config.CHECKPOINT.DIR = run_dir
    return SlurmTrainingJob(
        cfg_yaml=OmegaConf.to_yaml(cfg, resolve=True), run_dir=run_dir,
        port_base=int(cfg.config.SLURM.PORT_ID), max_requeues=int(cfg.config.SLURM.MAX_REQUEUES),
    )


def finished_marker(cfg: DictConfig) -> Optional[str]:
    """Path of the DONE marker when ``cfg``'s run has nothing left to do (see slurm_job.finished_run)."""
    return os.path.join(str(cfg.config.CHECKPOINT.DIR), "DONE") if finished_run(cfg) is not None else None


def sbatch_script(params: Dict[str, Any], folder: str, array_size: Optional[int] = None) -> str:
    """The sbatch script submitit would write for these parameters (for --dry-run)."""
    from submitit.slurm.slurm import _make_sbatch_string

    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(folder)])
    return _make_sbatch_string(command=command, folder=folder, map_count=array_size, **params)


def make_executor(params: Dict[str, Any], folder: str):
    import submitit

    try:
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=10**6)
    except RuntimeError as exc:
        raise SlurmLaunchError(
            f"{exc} Run this on a SLURM login node, start a local test cluster with "
            f"`sudo tools/slurm_cluster.sh start`, or preview the job with --dry-run."
        ) from None
    # The requeue cap is ours (SLURM.MAX_REQUEUES, counted over preemptions and time-outs alike),
    # so submitit's separate time-out counter is effectively disabled above.
    executor.update_parameters(**params)
    return executor


def explain_submission_error(exc: Exception, params: Dict[str, Any]) -> SlurmLaunchError:
    message = "\n  ".join((str(exc).strip() or repr(exc)).splitlines())
    requested = ", ".join(f"{k}={v}" for k, v in sorted(params.items()) if k not in ("srun_args", "setup"))
    return SlurmLaunchError(
        f"sbatch refused the job:\n  {message}\nRequested: {requested}.\n"
        f"Check the config.SLURM.* keys (PARTITION, TIME_MINUTES, MEM_GB, CPUS_PER_TASK, GPUS_PER_NODE, ...) "
        f"against `sinfo -o '%P %l %c %m %G'`."
    )


def submit(executor, jobs: Sequence[SlurmTrainingJob], params: Dict[str, Any]) -> List[Any]:
    """Submit one job, or one job array for several runs; SLURM's refusals become SlurmLaunchError."""
    from submitit.core.utils import FailedJobError

    try:
        if len(jobs) == 1:
            submitted = [executor.submit(jobs[0])]
        else:
            with executor.batch():
                submitted = [executor.submit(job) for job in jobs]
    except (FailedJobError, subprocess.CalledProcessError, OSError) as exc:
        raise explain_submission_error(exc, params) from None
    check_not_hopeless(submitted)
    return submitted


def _squeue(job_id: str) -> List[str]:
    result = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T|%r"], capture_output=True, text=True, timeout=30)
    return [line for line in result.stdout.splitlines() if line.strip()]


def check_not_hopeless(submitted: Sequence[Any]) -> None:
    """Cancel and report a job SLURM accepted but will never start (it would pend forever)."""
    job_id = str(submitted[0].job_id).split("_")[0]
    deadline = time.time() + PENDING_CHECK_S
    while time.time() < deadline:
        rows = [row.split("|", 1) for row in _squeue(job_id)]
        hopeless = {reason for state, reason in rows if state == "PENDING" and reason in HOPELESS_PENDING_REASONS}
        if hopeless:
            detail = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
            subprocess.run(["scancel", job_id], check=False)
            relevant = [line.strip() for line in detail.splitlines() if _REQUEST_FIELDS.search(line)]
            raise SlurmLaunchError(
                f"SLURM accepted job {job_id} but can never start it (Reason={', '.join(sorted(hopeless))}); "
                f"it was cancelled. SLURM's view of the request (scontrol show job {job_id}):\n  "
                + "\n  ".join(relevant)
                + "\nCompare with what the partition offers: sinfo -o '%P %l %D %c %m %G %f'."
            )
        # Reason "None" on a pending job means the scheduler has not looked at it yet.
        if all(state != "PENDING" or reason != "None" for state, reason in rows):
            return
        time.sleep(0.3)


def describe_job(job: Any, run_dir: str) -> Dict[str, str]:
    job_id = str(job.job_id)
    return {
        "job_id": job_id,
        "run_dir": run_dir,
        "stdout": str(job.paths.stdout),
        "stderr": str(job.paths.stderr),
    }


def print_submission(info: Dict[str, str], tasks: int, nodes: int) -> None:
    job_id = info["job_id"]
    print(
        f"Submitted SLURM job {job_id}: {tasks} task(s) on {nodes} node(s), run dir {info['run_dir']}\n"
        f"  logs:    {info['stdout']}\n"
        f"           {info['stderr']}\n"
        f"  follow:  tail -f {info['stderr']}\n"
        f"           squeue -j {job_id}    sacct -j {job_id}\n"
        f"  cancel:  scancel {job_id}"
    )


def print_dry_run(script: str, cfg: DictConfig) -> None:
    print("# --- sbatch script (dry run: nothing was submitted) ---")
    print(script)
    print("# --- composed config ---")
    print(OmegaConf.to_yaml(cfg, resolve=True))


def launch_on_slurm(cfg: DictConfig, overrides: Sequence[str] = (), dry_run: bool = False) -> List[Any]:
    """Submit ``cfg``'s run to SLURM; return the submitit jobs ([] for a dry run or a finished run)."""
    run_dir = absolute_run_dir(cfg)
    params = sbatch_parameters(cfg)
    folder = log_folder(cfg, run_dir)
    job = training_job(cfg, run_dir)
    job_cfg = OmegaConf.create(job.cfg_yaml)
    if dry_run or cfg.config.SLURM.DRY_RUN:
        print_dry_run(sbatch_script(params, folder), job_cfg)
        return []
    marker = finished_marker(job_cfg)
    if marker:
        print(f"Run {run_dir} has already finished ({marker} exists): nothing to do. Use another "
              f"config.CHECKPOINT.DIR, or raise config.OPTIMIZER.NUM_EPOCHS to continue it.")
        return []
    os.makedirs(run_dir, exist_ok=True)
    executor = make_executor(params, folder)
    submitted = submit(executor, [job], params)
    print_submission(describe_job(submitted[0], run_dir), tasks=params["nodes"] * params["ntasks_per_node"], nodes=params["nodes"])
    return submitted
