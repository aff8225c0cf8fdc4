"""What runs inside every SLURM task of a submitted run: the submitit callable.

One SLURM task is one training process. The task reads its place in the job
from SLURM's variables through submitit's ``JobEnvironment`` (SLURM_PROCID,
SLURM_NTASKS, SLURM_LOCALID, SLURM_JOB_NODELIST) and calls
``ssl_ext.launch.worker.run_worker`` with a ``tcp://<first node>:<port>``
rendezvous, on one node or many, gloo or nccl alike.

Preemption and time limits. SLURM sends USR2 ``SLURM.SIGNAL_DELAY_S`` seconds
before the time limit (and an operator or a preempting scheduler can send it at
any time, e.g. ``scancel --signal=USR2 <job>``). submitit's own USR2 handler
would call ``checkpoint()`` and requeue at once, from inside the signal handler,
while the training loop is frozen mid-step: it cannot wait for the step to end,
so whatever it saved would be stale. Instead the task keeps submitit's handler
aside and installs one that only raises the process-wide stop request
(``ssl_ext.engine.preemption``). The trainer finishes its step, saves a
checkpoint at that iteration and raises ``Preempted``; then rank 0 hands over to
submitit's handler, which calls :meth:`SlurmTrainingJob.checkpoint` (returning
the ``DelayedSubmission`` of the next attempt, with the requeue count) and runs
``scontrol requeue``. The requeued job starts the same callable again and the
train engine resumes from the newest checkpoint. A job whose training already
ended finishes normally and is not requeued; a finished run (its ``DONE``
marker records the same plan) does nothing. Each stop is appended to ``<run_dir>/preemptions.jsonl``.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, NoReturn, Optional

logger = logging.getLogger(__name__)

# How long ranks other than 0 wait, after saving, for rank 0's requeue to end the job.
REQUEUE_WAIT_S = 300.0
# Rendezvous ports are spread over this many values by job id, so jobs sharing a node differ.
PORT_SPREAD = 1000


class RequeueLimitReached(RuntimeError):
    """The run was stopped more often than ``SLURM.MAX_REQUEUES`` allows."""


def rendezvous_port(port_base: int, slurm_job_id: str) -> int:
    """Port of rank 0's TCP store: ``PORT_ID + job id mod PORT_SPREAD`` (array tasks have their own job ids)."""
    return int(port_base) + int(slurm_job_id) % PORT_SPREAD


@dataclass(frozen=True)
class TaskPlacement:
    rank: int
    world_size: int
    local_rank: int
    init_method: str


def task_placement(port_base: int) -> TaskPlacement:
    """Rank, world size, local rank and rendezvous address of this SLURM task."""
    import submitit

    env = submitit.JobEnvironment()
    master = env.hostnames[0]
    port = rendezvous_port(port_base, os.environ.get("SLURM_JOB_ID", env.raw_job_id))
    return TaskPlacement(env.global_rank, env.num_tasks, env.local_rank, f"tcp://{master}:{port}")


def _limit_threads_to_allocation() -> None:
    """Use the CPUs SLURM gave this task, not every core of the node (tasks share nodes)."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus:
        import torch

        torch.set_num_threads(max(1, int(cpus)))


def _defer_preemption_signal() -> Optional[Callable[..., Any]]:
    """Replace submitit's USR2 handler by one that asks the trainer to stop; return submitit's."""
    import submitit
    from ssl_ext.engine import preemption

    usr_signal = submitit.JobEnvironment._usr_sig()
    submitit_handler = signal.getsignal(usr_signal)

    def request_stop(signum: int, frame: Any) -> None:
        logger.warning("Received %s: checkpointing at the end of this step, then requeueing.", signal.Signals(signum).name)
        preemption.request_checkpoint_and_exit()

    signal.signal(usr_signal, request_stop)
    return submitit_handler if callable(submitit_handler) else None


def finished_run(cfg: Any) -> Optional[Dict[str, Any]]:
    """The DONE record of ``cfg``'s training run if it has nothing left to do (``engine.run_state``'s rule)."""
    from ssl_ext.engine.run_state import finished_run as finished_training_run

    if str(cfg.config.ENGINE_NAME) != "train":
        return None
    return finished_training_run(cfg)


@dataclass
class SlurmTrainingJob:
    """The callable submitit pickles for one run (one per sweep combination).

    ``cfg_yaml`` is the fully composed, resolved config; ``requeues`` counts the
    stops (preemptions and time-outs) this run already went through.
    """

    cfg_yaml: str
    run_dir: str
    port_base: int
    max_requeues: int
    requeues: int = 0

    def __call__(self) -> Dict[str, Any]:
        from omegaconf import OmegaConf

        from ssl_ext.engine.preemption import Preempted
        from ssl_ext.launch.worker import run_worker

        submitit_handler = _defer_preemption_signal()
        _limit_threads_to_allocation()
        cfg = OmegaConf.create(self.cfg_yaml)
        place = task_placement(self.port_base)
        try:
            return run_worker(cfg, place.rank, place.world_size, place.local_rank, place.init_method)
        except Preempted as stop:
            if place.rank != 0:
                return self._wait_for_requeue(stop)
            self._record_stop(stop)
            if submitit_handler is None:
                raise RuntimeError("submitit's preemption handler is missing; cannot requeue.") from stop
            # Calls self.checkpoint(), dumps the next attempt, runs `scontrol requeue` and exits;
            # raises when no requeue is possible (then the job fails with that reason).
            import submitit

            submitit_handler(submitit.JobEnvironment._usr_sig(), None)
            raise RuntimeError("submitit returned without requeueing the job") from stop

    def checkpoint(self) -> Any:
        """submitit's hook on preemption/time-out: the next attempt, or an error once the cap is reached.

        By the time this runs the trainer has saved its checkpoint (see the module
        docstring), so the next attempt only needs the same callable with the
        requeue count advanced; the train engine resumes by itself.
        """
        import submitit
        from omegaconf import OmegaConf

        if finished_run(OmegaConf.create(self.cfg_yaml)) is not None:
            logger.info("Run %s has finished (see its DONE): not requeueing.", self.run_dir)
            return None
        if self.requeues >= self.max_requeues:
            raise RequeueLimitReached(
                f"Run {self.run_dir} was stopped {self.requeues + 1} times; config.SLURM.MAX_REQUEUES="
                f"{self.max_requeues} allows {self.max_requeues} requeues. Its checkpoint is saved: relaunch the "
                f"same command to continue, or raise config.SLURM.MAX_REQUEUES."
            )
        logger.info("Requeueing run %s (requeue %d of at most %d).", self.run_dir, self.requeues + 1, self.max_requeues)
        return submitit.helpers.DelayedSubmission(replace(self, requeues=self.requeues + 1))

    def _record_stop(self, stop: Any) -> None:
        record = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "iteration": stop.iteration,
            "checkpoint": stop.checkpoint_path,
            "requeues_before": self.requeues,
        }
        with open(os.path.join(self.run_dir, "preemptions.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")

    def _wait_for_requeue(self, stop: Any) -> NoReturn:
        """Ranks != 0 saved their share and wait: rank 0's requeue (or failure) ends the whole job."""
        logger.info("Stopped at iteration %d; waiting for rank 0 to requeue the job.", stop.iteration)
        time.sleep(REQUEUE_WAIT_S)
        raise RuntimeError(f"Rank 0 did not requeue the job within {REQUEUE_WAIT_S:.0f} s after the stop at iteration {stop.iteration}.")
