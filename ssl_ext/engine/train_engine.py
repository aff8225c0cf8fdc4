"""The ``train`` engine: config -> components -> ``trainer.train``."""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, Optional

import torch
from omegaconf import DictConfig

from registry import register_engine
from ssl_ext.config.compose import save_config
from ssl_ext.config.errors import ConfigError
from ssl_ext.config.values import config_errors
from ssl_ext.data import build as data_build
from ssl_ext.engine import builders
from ssl_ext.engine.builders import build_hooks
from ssl_ext.engine.optimizers.param_groups import build_optimizer
from ssl_ext.engine.model import make_teacher
from ssl_ext.engine.run_lock import RunDirectoryInUse, RunLock
from ssl_ext.engine.run_state import DONE_FILE, TRAIN_CONFIG_FILE, finished_run, planned_iterations
from ssl_ext.engine.trainer import Task, train
from ssl_ext.utils import distributed as dist_utils
from ssl_ext.utils.io import atomic_write_text, path_manager

logger = logging.getLogger(__name__)


def resolve_device(cfg: DictConfig) -> torch.device:
    wanted = str(cfg.config.MACHINE.DEVICE)
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    if wanted.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("config.MACHINE.DEVICE=cuda but no CUDA device is visible; use cpu or auto.")
        if wanted == "cuda":
            local_rank = int(os.environ.get("LOCAL_RANK", 0))
            wanted = f"cuda:{local_rank % torch.cuda.device_count()}"
            torch.cuda.set_device(wanted)
    return torch.device(wanted)


def build_task(cfg: DictConfig) -> Task:
    """Build every component of a training run from the config (no training yet)."""
    c = cfg.config
    device = resolve_device(cfg)
    rank, world_size = dist_utils.get_rank(), dist_utils.get_world_size()
    with config_errors("config.DATA.TRAIN (DATA_SOURCES, DATA_PATHS, SOURCE_PARAMS, LONG_TAIL)"):
        dataset = data_build.build_dataset(cfg, "TRAIN")
    skipped = getattr(dataset.base, "num_skipped", 0)
    if rank == 0 and skipped:
        logger.warning("Skipped %d unreadable images (config.DATA.SKIP_CORRUPT=true); the data source logged them.", skipped)
    if rank == 0 and dataset.targets:
        from ssl_ext.data.long_tail import write_class_histogram

        long_tail = c.DATA.TRAIN.LONG_TAIL
        write_class_histogram(dataset.base, str(c.CHECKPOINT.DIR), int(long_tail.HEAD_MIN), int(long_tail.TAIL_MAX))
    with config_errors("config.DATA.TRAIN.SAMPLER", c.DATA.TRAIN.SAMPLER):
        loader, sampler = data_build.build_loader(cfg, dataset, "TRAIN", rank, world_size, int(c.SEED_VALUE))
    student = builders.build_model(cfg)
    if world_size > 1 and c.MODEL.SYNC_BN:
        student = torch.nn.SyncBatchNorm.convert_sync_batchnorm(student)
    student.to(device)
    # Ranks initialise their weights from different seeds; DDP would copy rank 0's into the student
    # only when it wraps it, after the teacher was copied from it. Every rank starts from rank 0's
    # weights before the teacher is made, so the teachers agree too (and rank 0's checkpointed
    # teacher is every rank's teacher on resume).
    dist_utils.broadcast_module_state(student)
    loss = builders.build_loss(cfg).to(device)
    teacher = make_teacher(student).to(device) if c.MODEL.EMA_TEACHER.ENABLED else None
    optimizer = build_optimizer(cfg, {"model": student, "loss": loss})
    task = Task(cfg, student, loss, optimizer, loader, sampler, build_hooks(cfg), teacher=teacher, device=device)
    if str(c.DATA.TRAIN.get("AUGMENT_ON", "loader")) == "device":
        from ssl_ext.data.batched import build_device_augment

        task.device_augment = build_device_augment(cfg)
    if world_size > 1:
        task.step_module = torch.nn.parallel.DistributedDataParallel(
            task.step_module, device_ids=[device.index] if device.type == "cuda" else None,
        )
    return task


@register_engine("train")
def train_engine(cfg: DictConfig) -> Dict[str, Any]:
    """Pretrain: take the run directory's lock, auto-resume from the newest readable checkpoint,
    train, write DONE. A finished run is left as it is."""
    c = cfg.config
    run_dir = str(c.CHECKPOINT.DIR)
    done = finished_run(cfg)
    if done is not None:
        if dist_utils.is_primary():
            logger.warning(
                "Run %s already finished at iteration %s (see %s/DONE); nothing to do. Raise "
                "config.OPTIMIZER.NUM_EPOCHS to train further.", run_dir, done.get("iteration"), run_dir,
            )
        return {**done, "already_finished": True}
    lock = _acquire_run_lock(cfg)
    try:
        task = build_task(cfg)
        if c.CHECKPOINT.AUTO_RESUME:
            task.try_auto_resume()
        if dist_utils.is_primary():
            save_config(cfg, os.path.join(run_dir, TRAIN_CONFIG_FILE))
        summary = train(task)
        if dist_utils.is_primary():
            record = {**summary, "max_iterations": task.max_iterations, "planned": planned_iterations(cfg)}
            atomic_write_text(os.path.join(run_dir, DONE_FILE), json.dumps(record, indent=2))
        dist_utils.barrier()
    finally:
        if lock is not None:
            lock.release()
    return summary


def _acquire_run_lock(cfg: DictConfig) -> Optional[RunLock]:
    """Rank 0 takes the run directory's lock; every rank learns whether it got it."""
    lock, error = None, None
    if dist_utils.is_primary():
        path_manager.mkdirs(str(cfg.config.CHECKPOINT.DIR))
        try:
            lock = RunLock(str(cfg.config.CHECKPOINT.DIR)).acquire()
        except RunDirectoryInUse as exc:
            error = exc
    if dist_utils.all_reduce_max(1.0 if error else 0.0) > 0:
        raise error or RunDirectoryInUse("Rank 0 could not take the run directory's lock (its message says why).")
    return lock
