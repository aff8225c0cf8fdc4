"""Local launcher: in-process for one process, else N processes on this machine (torch.multiprocessing)."""
from __future__ import annotations

import json
import os
import socket
import tempfile
from typing import Any

import torch.multiprocessing as mp
from omegaconf import DictConfig, OmegaConf

from ssl_ext.config import ConfigError
from ssl_ext.launch.worker import run_worker


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawned(local_rank: int, cfg_yaml: str, world_size: int, init_method: str, result_dir: str) -> None:
    import torch

    # N processes x the default thread count oversubscribe the cores (torchrun sets 1 thread likewise).
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    cfg = OmegaConf.create(cfg_yaml)
    result = run_worker(cfg, rank=local_rank, world_size=world_size, local_rank=local_rank, init_method=init_method)
    if local_rank == 0:
        with open(os.path.join(result_dir, "result.json"), "w") as f:
            json.dump(result, f, default=str)


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
    if nprocs == 1:
        return run_worker(cfg)
    init_method = str(dist_cfg.INIT_METHOD) or f"tcp://127.0.0.1:{free_port()}"
    with tempfile.TemporaryDirectory(prefix="ssl_ext_launch_") as result_dir:
        mp.start_processes(
            _spawned, args=(OmegaConf.to_yaml(cfg, resolve=True), nprocs, init_method, result_dir),
            nprocs=nprocs, join=True, start_method="spawn",
        )
        path = os.path.join(result_dir, "result.json")
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
    return None
