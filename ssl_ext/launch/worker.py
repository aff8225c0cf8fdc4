"""What every process runs, however it was launched (in-process, local spawn, SLURM task)."""
from __future__ import annotations

import logging
import os
import random
import sys
from typing import Any, Optional

import numpy as np
import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf

import registry


def setup_logging(rank: int, verbose: bool = False) -> None:
    """ssl_ext's loggers: INFO on rank 0 (DEBUG with ``config.VERBOSE``), WARNING on the other ranks."""
    level = (logging.DEBUG if verbose else logging.INFO) if rank == 0 else logging.WARNING
    root = logging.getLogger()
    # An embedding application's (or pytest's) handlers stay in place; a handler of ours is added only
    # to a bare root logger, and it writes to whatever sys.stderr is when a record comes, not to the
    # stream of the moment it was made (which a notebook or a test runner may have closed since).
    if not root.handlers:
        handler = CurrentStderrHandler()
        handler.setFormatter(logging.Formatter(f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(level)
    logging.getLogger("ssl_ext").setLevel(level)


class CurrentStderrHandler(logging.StreamHandler):
    """A stream handler bound to the current ``sys.stderr`` at every record."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; the property ignores that
        pass


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_deterministic(enabled: bool) -> None:
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=False)
    torch.backends.cudnn.benchmark = not enabled


def backend_for(cfg: DictConfig) -> str:
    backend = str(cfg.config.DISTRIBUTED.BACKEND)
    if backend == "auto":
        wants_cuda = str(cfg.config.MACHINE.DEVICE) != "cpu" and torch.cuda.is_available()
        return "nccl" if wants_cuda else "gloo"
    return backend


def local_cuda_index(wanted: str, local_rank: int, device_count: int) -> Optional[int]:
    """The GPU this process uses for ``MACHINE.DEVICE=wanted``: ``cuda:N`` means N, ``cuda``/``auto`` the local
    rank modulo the visible GPUs; None on the CPU (``cpu``, or ``auto`` without a GPU)."""
    if wanted == "cpu" or device_count < 1:
        return None
    if wanted.startswith("cuda:"):
        return int(wanted.split(":", 1)[1])
    return local_rank % device_count


def run_worker(cfg: DictConfig, rank: int = 0, world_size: int = 1, local_rank: int = 0, init_method: Optional[str] = None) -> Any:
    """Set up this process (logging, seeds, determinism, torch.distributed) and run the configured engine."""
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(local_rank)})
    verbose = bool(cfg.config.get("VERBOSE", False))
    setup_logging(rank, verbose)
    if verbose and rank == 0:
        logging.getLogger("ssl_ext").info("Composed config (config.VERBOSE=true):\n%s", OmegaConf.to_yaml(cfg, resolve=True))
    registry.load_plugins(list(cfg.config.PLUGINS), origin="config.PLUGINS")
    threads = int(cfg.config.MACHINE.get("NUM_THREADS", 0))
    if threads > 0:
        torch.set_num_threads(threads)
    seed_everything(int(cfg.config.SEED_VALUE) + rank)
    # An in-process run (tests, notebooks) must not leave its determinism setting behind.
    was_deterministic, was_benchmark = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    set_deterministic(bool(cfg.config.DETERMINISTIC))
    gpu = local_cuda_index(str(cfg.config.MACHINE.DEVICE), local_rank, torch.cuda.device_count() if torch.cuda.is_available() else 0)
    if gpu is not None:
        # Before the process group and the engine: nccl binds a rank to the current device, and engines that
        # take torch.cuda.current_device() (feature extraction, linear eval) would put every local rank on GPU 0.
        torch.cuda.set_device(gpu)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend=backend_for(cfg), init_method=init_method, rank=rank, world_size=world_size)
    try:
        return registry.build_engine(str(cfg.config.ENGINE_NAME), cfg=cfg)
    finally:
        if world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()
        torch.use_deterministic_algorithms(was_deterministic)
        torch.backends.cudnn.benchmark = was_benchmark
