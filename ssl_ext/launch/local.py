"""Local launcher: in-process for one process, else N processes on this machine (torch.multiprocessing).

Before anything starts, the request is checked against the machine (cores, GPUs, memory): a run
asking for more processes than it can hold is refused with the numbers. A user error in any rank
(a bad value found while building, a locked run directory, ...) reaches the command line as the
same one-line message it would be in a single process.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import socket
import tempfile
from typing import Any, Optional

import torch
import torch.multiprocessing as mp
from omegaconf import DictConfig, OmegaConf

from ssl_ext.config import ConfigError
from ssl_ext.errors import UserError
from ssl_ext.launch.worker import run_worker

# Resident memory of one idle training process (interpreter, torch, ssl_ext) before its model and data.
PROCESS_BASE_MEMORY_BYTES = 600 * 2**20


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available_memory_bytes() -> Optional[int]:
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def check_machine_fits(cfg: DictConfig, nprocs: int) -> None:
    """Refuse, with the numbers, a local launch the machine cannot hold (before any process starts)."""
    device = str(cfg.config.MACHINE.DEVICE)
    wants_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    key = "config.DISTRIBUTED.NUM_PROC_PER_NODE"
    if wants_cuda:
        gpus = torch.cuda.device_count()
        if gpus == 0:
            raise ConfigError(f"config.MACHINE.DEVICE={device}: no CUDA device is visible on this machine; use cpu or auto.")
        if ":" in device and int(device.split(":", 1)[1]) >= gpus:
            raise ConfigError(f"config.MACHINE.DEVICE={device}: this machine has {gpus} visible GPU(s), cuda:0 to cuda:{gpus - 1}.")
        if ":" not in device and nprocs > gpus:  # cuda:N puts every rank on GPU N
            raise ConfigError(f"{key}={nprocs}: this machine has {gpus} visible GPU(s); use at most {gpus} processes (one per GPU).")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if not wants_cuda and nprocs > cores:
        raise ConfigError(
            f"{key}={nprocs}: this machine gives this launch {cores} CPU core(s); more processes than cores only slow "
            f"every rank down. Use at most {cores}, or a SLURM launcher (launcher=slurm_cpu) for more."
        )
    memory = available_memory_bytes()
    needed = nprocs * PROCESS_BASE_MEMORY_BYTES
    if memory is not None and needed > memory:
        raise ConfigError(
            f"{key}={nprocs}: {nprocs} processes need at least {needed / 2**30:.1f} GiB before any model or data, "
            f"and {memory / 2**30:.1f} GiB is available. Use fewer processes."
        )


def _spawned(local_rank: int, cfg_yaml: str, world_size: int, init_method: str, result_dir: str) -> None:
    # N processes x the default thread count oversubscribe the cores (torchrun sets 1 thread likewise).
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    cfg = OmegaConf.create(cfg_yaml)
    try:
        result = run_worker(cfg, rank=local_rank, world_size=world_size, local_rank=local_rank, init_method=init_method)
    except UserError as exc:
        # The parent re-raises rank 0's error (or the first one to arrive) as itself, without a traceback.
        path = os.path.join(result_dir, f"user_error_rank{local_rank}.pickle")
        with open(path + ".tmp", "wb") as f:
            pickle.dump(_picklable(exc), f)
        os.replace(path + ".tmp", path)
        raise SystemExit(2)
    if local_rank == 0:
        with open(os.path.join(result_dir, "result.json"), "w") as f:
            json.dump(result, f, default=str)


def _picklable(exc: UserError) -> UserError:
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        plain = UserError(str(exc))
        plain.exit_code = getattr(exc, "exit_code", 2)
        return plain


def _rank_user_error(result_dir: str, nprocs: int) -> Optional[UserError]:
    for rank in range(nprocs):
        path = os.path.join(result_dir, f"user_error_rank{rank}.pickle")
        if os.path.exists(path):
            with open(path, "rb") as f:
                return pickle.load(f)
    return None


def launch(cfg: DictConfig) -> Any:
    """Run ``cfg.config.ENGINE_NAME`` on ``DISTRIBUTED.NUM_PROC_PER_NODE`` local processes; return rank 0's result."""
    dist_cfg = cfg.config.DISTRIBUTED
    if int(dist_cfg.NUM_NODES) > 1:
        raise ConfigError(
            f"config.DISTRIBUTED.NUM_NODES={dist_cfg.NUM_NODES}: several nodes need a cluster launcher; "
            f"set config.SLURM.USE_SLURM=true."
        )
    nprocs = int(dist_cfg.NUM_PROC_PER_NODE)
    if nprocs < 1:
        raise ConfigError(f"config.DISTRIBUTED.NUM_PROC_PER_NODE={nprocs}: must be at least 1.")
    check_machine_fits(cfg, nprocs)
    if nprocs == 1:
        return run_worker(cfg)
    init_method = str(dist_cfg.INIT_METHOD) or f"tcp://127.0.0.1:{free_port()}"
    start_method = str(dist_cfg.get("START_METHOD", "spawn"))
    with tempfile.TemporaryDirectory(prefix="ssl_ext_launch_") as result_dir:
        # When one rank stops, torch logs a "Terminating process <pid>" line for each other rank; the
        # user error (or the crash's traceback) below is the message, so that line is left out.
        spawn_logger = logging.getLogger("torch.multiprocessing.spawn")
        level = spawn_logger.level
        spawn_logger.setLevel(logging.ERROR)
        try:
            mp.start_processes(
                _spawned, args=(OmegaConf.to_yaml(cfg, resolve=True), nprocs, init_method, result_dir),
                nprocs=nprocs, join=True, start_method=start_method,
            )
        except mp.ProcessExitedException:
            error = _rank_user_error(result_dir, nprocs)
            if error is not None:
                raise error from None
            raise
        except mp.ProcessRaisedException:
            error = _rank_user_error(result_dir, nprocs)
            if error is not None:
                raise error from None
            raise
        finally:
            spawn_logger.setLevel(level)
        path = os.path.join(result_dir, "result.json")
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
    return None
