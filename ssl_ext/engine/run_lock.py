"""One live owner per run directory.

``RunLock`` creates ``<run_dir>/.ssl_ext.lock`` with an atomic exclusive create (``O_CREAT |
O_EXCL``, which NFS v3+ and Lustre honour) holding the owner's identity: host, pid, SLURM job id
and start time. A second launch on the same directory stops at once naming the holder. The lock
is taken over, with a warning, when its owner is provably gone:

* same host: the pid no longer runs (or runs another program: its start time differs);
* the same SLURM job (a requeue keeps the job id; array tasks compare ``<array job>_<task>``);
* another host without a common job: its heartbeat (the file's mtime, refreshed by the owner every
  ``heartbeat_s`` seconds from a daemon thread) is older than ``stale_after_s``.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from typing import Any, Dict, Optional

from ssl_ext.errors import UserError

logger = logging.getLogger(__name__)
LOCK_FILE = ".ssl_ext.lock"


class RunDirectoryInUse(UserError):
    pass


def slurm_job_key() -> Optional[str]:
    """This process's SLURM job identity, stable across requeues; None outside SLURM."""
    array_job, array_task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and array_task:
        return f"{array_job}_{array_task}"
    return os.environ.get("SLURM_JOB_ID")


def _process_start_time(pid: int) -> Optional[str]:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks): tells a reused pid from the owner."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (killed, not yet reaped by its parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


class RunLock:
    def __init__(self, run_dir: str, heartbeat_s: float = 60.0, stale_after_s: float = 600.0):
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, LOCK_FILE)
        self.heartbeat_s, self.stale_after_s = heartbeat_s, stale_after_s
        self.identity: Dict[str, Any] = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "pid_start": _process_start_time(os.getpid()),
            "slurm_job": slurm_job_key(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        }
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # ---------------------------------------------------------------- acquire
    def acquire(self) -> "RunLock":
        os.makedirs(self.run_dir, exist_ok=True)
        for _ in range(3):
            if self._create():
                self._start_heartbeat()
                return self
            holder = self._read_holder()
            if holder is None:  # removed or half-written between our create and read: try again
                time.sleep(0.05)
                continue
            reason = self._gone_reason(holder)
            if reason is None:
                raise RunDirectoryInUse(
                    f"Run directory {self.run_dir} is in use by another live run: {describe(holder)} "
                    f"(lock file {self.path}). Wait for it to finish, stop it, or use another config.CHECKPOINT.DIR."
                )
            logger.warning("Taking over the lock of %s from %s: %s.", self.run_dir, describe(holder), reason)
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass
        raise RunDirectoryInUse(f"Could not take the lock {self.path}: another launch keeps taking it. Is a second launch racing this one?")

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(self.identity, f)
            f.flush()
            os.fsync(f.fileno())
        return True

    def _read_holder(self) -> Optional[Dict[str, Any]]:
        try:
            with open(self.path) as f:
                holder = json.load(f)
            holder["heartbeat_age_s"] = time.time() - os.path.getmtime(self.path)
            return holder
        except (OSError, ValueError):
            return None

    def _gone_reason(self, holder: Dict[str, Any]) -> Optional[str]:
        """Why the holder is certainly not running any more, or None when it may be alive."""
        mine = self.identity
        if holder.get("slurm_job") and holder.get("slurm_job") == mine["slurm_job"]:
            return f"it is this SLURM job ({mine['slurm_job']}) before its requeue"
        if holder.get("host") == mine["host"]:
            pid = int(holder.get("pid", -1))
            if pid == mine["pid"]:
                return "it is this process (a stale lock of an earlier run in this process)"
            if not _pid_alive(pid):
                return f"process {pid} no longer runs"
            if holder.get("pid_start") and _process_start_time(pid) != holder.get("pid_start"):
                return f"pid {pid} now belongs to another process"
            return None
        if holder["heartbeat_age_s"] > self.stale_after_s:
            return f"its heartbeat is {holder['heartbeat_age_s']:.0f}s old (more than {self.stale_after_s:.0f}s)"
        return None

    # --------------------------------------------------------------- heartbeat
    def _start_heartbeat(self) -> None:
        def beat() -> None:
            while not self._stop.wait(self.heartbeat_s):
                try:
                    os.utime(self.path)
                except OSError:
                    pass

        self._thread = threading.Thread(target=beat, name="ssl_ext-run-lock", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        holder = self._read_holder()
        if holder is not None and holder.get("pid") == self.identity["pid"] and holder.get("host") == self.identity["host"]:
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def describe(holder: Dict[str, Any]) -> str:
    job = f", SLURM job {holder['slurm_job']}" if holder.get("slurm_job") else ""
    return f"host {holder.get('host')}, pid {holder.get('pid')}{job}, started {holder.get('started')}"
