"""The training loop: one small explicit loop (dinov2 style); everything else is a plugin or a hook.

``Task`` holds what the loop and the hooks share. ``train(task)`` runs it:

    on_start
    for each epoch:        on_phase_start
        for each batch:    schedules -> forward (+ teacher) -> loss -> on_forward
                           backward -> on_backward
                           [every ACCUMULATE_GRAD_STEPS] clip, optimizer step, EMA -> on_update
                           on_step; a stop request (SLURM signal) saves and raises Preempted
        on_phase_end
    on_end
"""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch
from omegaconf import DictConfig
from torch import nn

from ssl_ext.engine import checkpoint as ckpt
from ssl_ext.engine import checkpoint_keys as keys
from ssl_ext.engine import preemption
from ssl_ext.engine.model import SSLModel, ema_update
from ssl_ext.engine.output import ModelOutput
from ssl_ext.config.errors import ConfigError
from ssl_ext.errors import RunStopped
from ssl_ext.engine.schedules import loss_param_schedule, lr_schedule, wd_schedule, build_schedule
from ssl_ext.utils import distributed as dist_utils
from ssl_ext.utils import rng

logger = logging.getLogger(__name__)


class TrainStep(nn.Module):
    """Student forward plus loss in one module, so DDP synchronizes the gradients of both
    (losses may own parameters, e.g. MSN's prototypes)."""

    def __init__(self, student: SSLModel, loss: nn.Module, student_views: List[int]):
        super().__init__()
        self.student, self.loss = student, loss
        self.student_views = student_views

    def forward(self, batch: Dict[str, Any], teacher_out: Optional[List[torch.Tensor]], teacher_views: List[int]):
        views = [batch["views"][i] for i in self.student_views]
        student_out = self.student(views, mask=True)
        output = ModelOutput(student=student_out, teacher=teacher_out, student_views=self.student_views, teacher_views=teacher_views)
        terms = self.loss(output, batch)
        if not isinstance(terms, dict):
            terms = {"loss": terms}
        if "loss" not in terms:
            raise KeyError(f"Loss {type(self.loss).__name__} returned terms {sorted(terms)} without a 'loss' entry.")
        return terms, output


@dataclass(frozen=True)
class LoopSettings:
    """Every config key the loop itself reads, in one place (components read theirs when built).

    ``config.OPTIMIZER``: ``ACCUMULATE_GRAD_STEPS`` (batches per optimizer update),
    ``NUM_EPOCHS``, ``MAX_ITERATIONS`` (-1: no cap), ``BASE_LR`` for a global batch of
    ``BASE_LR_BATCH_SIZE`` (scaled linearly), ``CLIP_GRAD_NORM`` (0: off); the LR and WD schedules
    are read from the section by ``engine.schedules``. ``config.MODEL``: ``STUDENT_VIEWS`` /
    ``TEACHER_VIEWS`` ([] = all), ``EMA_TEACHER.MOMENTUM_START/END``, ``AMP.ENABLED/DTYPE``.
    ``config.LOSS_SCHEDULES``: loss attributes to schedule. ``config.CHECKPOINT``: ``DIR``,
    ``KEEP_LAST``, ``ON_UNREADABLE``. ``config.SEED_VALUE`` (per-step random draws) and
    ``config.DATA.TRAIN.BATCHSIZE_PER_REPLICA``.
    """

    run_dir: str
    seed: int
    batch_size_per_replica: int
    accumulate: int
    num_epochs: int
    max_iterations: int
    base_lr: float
    base_lr_batch_size: float
    clip_grad_norm: float
    student_views: tuple
    teacher_views: tuple
    ema_momentum_start: float
    ema_momentum_end: float
    amp_enabled: bool
    amp_dtype: str
    loss_schedules: Dict[str, Dict[str, Any]]
    keep_last: int
    on_unreadable: str

    @classmethod
    def from_config(cls, cfg: DictConfig) -> "LoopSettings":
        c = cfg.config
        return cls(
            run_dir=str(c.CHECKPOINT.DIR), seed=int(c.SEED_VALUE),
            batch_size_per_replica=int(c.DATA.TRAIN.BATCHSIZE_PER_REPLICA),
            accumulate=int(c.OPTIMIZER.ACCUMULATE_GRAD_STEPS), num_epochs=int(c.OPTIMIZER.NUM_EPOCHS),
            max_iterations=int(c.OPTIMIZER.MAX_ITERATIONS), base_lr=float(c.OPTIMIZER.BASE_LR),
            base_lr_batch_size=float(c.OPTIMIZER.BASE_LR_BATCH_SIZE), clip_grad_norm=float(c.OPTIMIZER.CLIP_GRAD_NORM),
            student_views=tuple(c.MODEL.STUDENT_VIEWS), teacher_views=tuple(c.MODEL.TEACHER_VIEWS),
            ema_momentum_start=float(c.MODEL.EMA_TEACHER.MOMENTUM_START),
            ema_momentum_end=float(c.MODEL.EMA_TEACHER.MOMENTUM_END),
            amp_enabled=bool(c.MODEL.AMP.ENABLED), amp_dtype=str(c.MODEL.AMP.DTYPE),
            loss_schedules={name: dict(spec) for name, spec in (c.LOSS_SCHEDULES or {}).items()},
            keep_last=int(c.CHECKPOINT.KEEP_LAST), on_unreadable=str(c.CHECKPOINT.get("ON_UNREADABLE", "stop")),
        )


class Task:
    """Everything the loop and its hooks share for one run (VISSL's task, made small).

    Attributes hooks may read: cfg, run_dir, device, rank, world_size, student,
    teacher, loss, optimizer, train_loader, sampler, epoch, iteration (optimizer
    updates done), step_in_epoch (batches consumed this epoch), max_iterations,
    num_epochs, iterations_per_epoch, batch, last_output, last_loss_terms (floats),
    lr, weight_decay, ema_momentum, global_batch_size, last_checkpoint_path, hooks.
    """

    def __init__(self, cfg: DictConfig, student: SSLModel, loss: nn.Module, optimizer: torch.optim.Optimizer,
                 train_loader, sampler, hooks: List[Any], teacher: Optional[SSLModel] = None,
                 device: Optional[torch.device] = None):
        self.cfg = cfg
        self.settings = settings = LoopSettings.from_config(cfg)
        self.run_dir = settings.run_dir
        self.device = device or torch.device("cpu")
        self.rank, self.world_size = dist_utils.get_rank(), dist_utils.get_world_size()
        self.student, self.teacher, self.loss, self.optimizer = student, teacher, loss, optimizer
        self.train_loader, self.sampler, self.hooks = train_loader, sampler, hooks
        self.accumulate = settings.accumulate
        self.num_epochs = settings.num_epochs
        self.iterations_per_epoch = len(train_loader) // self.accumulate
        if self.iterations_per_epoch == 0:
            raise ConfigError(
                f"An epoch has {len(train_loader)} batches, fewer than config.OPTIMIZER.ACCUMULATE_GRAD_STEPS="
                f"{self.accumulate}: lower config.DATA.TRAIN.BATCHSIZE_PER_REPLICA or use more data."
            )
        planned = self.num_epochs * self.iterations_per_epoch
        self.max_iterations = min(planned, settings.max_iterations) if settings.max_iterations > 0 else planned
        self.global_batch_size = settings.batch_size_per_replica * self.world_size * self.accumulate
        self.peak_lr = settings.base_lr * self.global_batch_size / settings.base_lr_batch_size
        self.lr_schedule = lr_schedule(cfg.config.OPTIMIZER, self.peak_lr, self.num_epochs)
        self.wd_schedule = wd_schedule(cfg.config.OPTIMIZER)
        self.ema_schedule = build_schedule("linear", settings.ema_momentum_start, settings.ema_momentum_end)
        self.loss_schedules = {name: loss_param_schedule(name, spec) for name, spec in settings.loss_schedules.items()}
        self.scheduled_owners = {name: _attribute_owner(loss, name) for name in self.loss_schedules}
        self.student_views = list(settings.student_views)
        self.teacher_views = list(settings.teacher_views)
        self.amp_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(settings.amp_dtype)
        if settings.amp_enabled and self.amp_dtype is None:
            raise ConfigError(f"config.MODEL.AMP.DTYPE={settings.amp_dtype!r}: use bfloat16 or float16.")
        if settings.amp_enabled and self.amp_dtype == torch.float16 and self.device.type != "cuda":
            raise ConfigError("config.MODEL.AMP.DTYPE=float16 needs CUDA; use bfloat16 on CPU.")
        self.amp_enabled = settings.amp_enabled
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_enabled and self.amp_dtype == torch.float16)
        self.clip_grad_norm = settings.clip_grad_norm
        self.seed = settings.seed
        # Optional fn(batch, task) -> batch run on the device batch before the forward (batched augmentation).
        self.device_augment = None
        self.epoch = self.iteration = self.step_in_epoch = 0
        self.lr = self.weight_decay = self.ema_momentum = 0.0
        self.batch: Optional[Dict[str, Any]] = None
        self.last_output: Optional[ModelOutput] = None
        self.last_loss_terms: Dict[str, float] = {}
        self.last_checkpoint_path: Optional[str] = None
        # Checkpoints known to load (written by this process, or resumed from): rotation counts only these.
        self.readable_checkpoints: set = set()
        self.resumed_from: Optional[str] = None
        self.step_module: nn.Module = TrainStep(student, loss, self.student_views or [])

    # ----------------------------------------------------------------- events
    def run_hooks(self, event: str) -> None:
        for hook in self.hooks:
            getattr(hook, event)(self)

    def log_metrics(self, scalars: Dict[str, Any]) -> None:
        """Send one record (``iteration``/``epoch`` added) to every metric sink hook (jsonl, TensorBoard)."""
        record = {"iteration": self.iteration, "epoch": self.epoch, **scalars}
        for hook in self.hooks:
            write = getattr(hook, "write_metrics", None)
            if write is not None:
                write(self, record)

    @property
    def done(self) -> bool:
        return self.iteration >= self.max_iterations

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> Dict[str, Any]:
        return {
            keys.STUDENT: self.student.state_dict(),
            keys.TEACHER: self.teacher.state_dict() if self.teacher is not None else None,
            keys.LOSS: self.loss.state_dict(),
            keys.OPTIMIZER: self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "iteration": self.iteration,
            "step_in_epoch": self.step_in_epoch,
            # Batches (not indices) consumed: loader workers prefetch ahead of the loop.
            "sampler": self.sampler.state_dict(batches_consumed=self.step_in_epoch),
            "hooks": {type(h).__name__: h.state_dict() for h in self.hooks if hasattr(h, "state_dict")},
        }

    def save_checkpoint(self) -> str:
        """All ranks call this (their RNG states are gathered); rank 0 writes atomically.

        A state holding a NaN or an infinity in any tensor (weights, buffers such as BatchNorm
        statistics, optimizer moments) is never written: the run stops instead, naming the
        tensors, so the newest checkpoint on disk is always one a run can resume from.
        """
        rng_states = dist_utils.all_gather_object(ckpt.rng_state())
        state = self.state_dict()
        bad = ckpt.nonfinite_tensors(state)
        if dist_utils.all_reduce_max(1.0 if bad else 0.0) > 0:
            raise NonFiniteStateError(self, bad)
        path = ckpt.checkpoint_path(self.run_dir, self.iteration)
        if self.rank == 0:
            state["rng"] = rng_states
            state["world_size"] = self.world_size
            path = ckpt.save_checkpoint(
                self.run_dir, self.iteration, state, self.settings.keep_last, self.readable_checkpoints,
            )
        dist_utils.barrier()
        self.last_checkpoint_path = path
        return path

    def load_state_dict(self, state: Dict[str, Any], path: str) -> None:
        try:
            self.student.load_state_dict(state[keys.STUDENT])
            if self.teacher is not None and state.get(keys.TEACHER) is not None:
                self.teacher.load_state_dict(state[keys.TEACHER])
            self.loss.load_state_dict(state[keys.LOSS])
            self.optimizer.load_state_dict(state[keys.OPTIMIZER])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise ckpt.CheckpointError(
                f"Checkpoint {path} does not fit this run's model, loss or optimizer ({str(exc).splitlines()[0]}). "
                "Was the run directory used with another config? Relaunch with the config the run was started with "
                f"({os.path.join(self.run_dir, 'train_config.yaml')}) or use a new config.CHECKPOINT.DIR."
            ) from exc
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.iteration = int(state["epoch"]), int(state["iteration"])
        self.step_in_epoch = int(state["step_in_epoch"])
        # Checkpoints of ssl_ext <= 0.1.0 had no sampler state: their position is the consumed batches.
        self.sampler.load_state_dict(state.get("sampler") or {
            "epoch": self.epoch, "num_yielded": self.step_in_epoch * self.train_loader.batch_size,
        })
        for hook in self.hooks:
            saved = state.get("hooks", {}).get(type(hook).__name__)
            if saved is not None and hasattr(hook, "load_state_dict"):
                hook.load_state_dict(saved)
        rng = state.get("rng") or []
        if len(rng) == self.world_size:
            ckpt.set_rng_state(rng[self.rank])
        else:
            logger.warning(
                "Checkpoint %s was written with %d processes, this run has %d: RNG streams restart from the seed, "
                "so the continuation is not bit-exact.", path, len(rng), self.world_size,
            )
        self.last_checkpoint_path = self.resumed_from = path
        self.readable_checkpoints.add(path)

    def try_auto_resume(self) -> bool:
        found = ckpt.load_newest_checkpoint(self.run_dir, self.settings.on_unreadable)
        if found is None:
            return False
        path, state = found
        self.load_state_dict(state, path)
        if self.iteration > self.max_iterations:
            raise ckpt.CheckpointError(
                f"Run {self.run_dir} has already trained {self.iteration} iterations (checkpoint {path}), more than this "
                f"config asks for in all ({self.max_iterations}: config.OPTIMIZER.NUM_EPOCHS={self.num_epochs}, "
                f"MAX_ITERATIONS={self.settings.max_iterations}). Nothing was changed. Raise NUM_EPOCHS to "
                "train further, or use a new config.CHECKPOINT.DIR for a shorter run."
            )
        logger.info("Resumed from %s (epoch %d, iteration %d).", path, self.epoch, self.iteration)
        return True

    # ------------------------------------------------------------------ steps
    def apply_schedules(self) -> None:
        where = min(self.iteration / max(self.max_iterations, 1), 1.0 - 1e-9)
        self.lr, self.weight_decay = float(self.lr_schedule(where)), float(self.wd_schedule(where))
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr
            if group.get("apply_weight_decay", True):
                group["weight_decay"] = self.weight_decay
        self.ema_momentum = float(self.ema_schedule(where))
        for name, schedule in self.loss_schedules.items():
            setattr(self.scheduled_owners[name], name, float(schedule(where)))

    def autocast(self):
        if not self.amp_enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def teacher_forward(self, batch: Dict[str, Any]) -> Optional[List[torch.Tensor]]:
        if self.teacher is None:
            return None
        views = [batch["views"][i] for i in self.teacher_views] if self.teacher_views else batch["views"]
        with torch.no_grad():
            return [t.detach() for t in self.teacher(views, mask=False, use_student_heads=False)]

    def step(self, batch: Dict[str, Any]) -> None:
        """One micro-batch; every ``ACCUMULATE_GRAD_STEPS`` of them make one optimizer update::

            seed the global RNGs from (seed, epoch, step_in_epoch, rank)
            batch = batch on the device (then device_augment, if set)
            lr, wd, EMA momentum, loss attributes = their schedules at iteration / max_iterations
            with autocast:                                      # AMP when enabled
                teacher_out = teacher(teacher views)            # no grad; None without a teacher
                terms = loss(ModelOutput(student(student views, mask=True), teacher_out), batch)
            hooks.on_forward                                    # NaN guard, logging
            backward(scale(terms["loss"]) / ACCUMULATE_GRAD_STEPS)   # DDP syncs only on updates
            hooks.on_backward
            if this micro-batch completes an update:
                unscale, clip (CLIP_GRAD_NORM), optimizer step, zero grads
                teacher <- EMA(teacher, student); iteration += 1
                hooks.on_update                                 # checkpoints, metrics
            hooks.on_step
        """
        # Every random draw of this step (patch drop, masks, noise) follows from this key alone.
        rng.seed_step(self.seed, self.epoch, self.step_in_epoch, self.rank)
        self.batch = batch = _to_device(batch, self.device)
        if self.device_augment is not None:
            batch = self.batch = self.device_augment(batch, self)
        if not self.student_views:
            self._use_all_views_for_student(len(batch["views"]))
        self.apply_schedules()
        is_update = (self.step_in_epoch + 1) % self.accumulate == 0
        sync = contextlib.nullcontext() if is_update or not hasattr(self.step_module, "no_sync") else self.step_module.no_sync()
        with sync:
            with self.autocast():
                teacher_out = self.teacher_forward(batch)
                terms, output = self.step_module(batch, teacher_out, self.teacher_views or list(range(len(batch["views"]))))
            self.last_output = output
            self.loss_tensor = terms["loss"]
            self.last_loss_terms = _to_floats(terms)
            self.run_hooks("on_forward")
            self.scaler.scale(terms["loss"] / self.accumulate).backward()
        self.run_hooks("on_backward")
        self.step_in_epoch += 1
        if is_update:
            self.scaler.unscale_(self.optimizer)
            if self.clip_grad_norm > 0:
                params = [p for g in self.optimizer.param_groups for p in g["params"]]
                torch.nn.utils.clip_grad_norm_(params, self.clip_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            if self.teacher is not None:
                ema_update(self.teacher, self.student, self.ema_momentum)
            self.iteration += 1
            self.run_hooks("on_update")
        self.run_hooks("on_step")

    def _use_all_views_for_student(self, num_views: int) -> None:
        self.student_views = list(range(num_views))
        inner = self.step_module.module if hasattr(self.step_module, "module") else self.step_module
        inner.student_views = self.student_views


class NonFiniteStateError(RunStopped, FloatingPointError):
    """The training state went non-finite; raised instead of writing it as a checkpoint."""

    def __init__(self, task: "Task", names: List[str]):
        shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        last = task.last_checkpoint_path or "none (the run has not saved one yet)"
        super().__init__(
            f"Non-finite values (NaN/Inf) in the training state at epoch {task.epoch}, iteration {task.iteration}: "
            f"{shown or 'on another rank'}. This state was not saved. Last good checkpoint: {last}. "
            "Lower config.OPTIMIZER.BASE_LR, set config.OPTIMIZER.CLIP_GRAD_NORM, or disable AMP, then relaunch the "
            "same command with that change (and config.CHECKPOINT.ALLOW_RECIPE_CHANGE=true for the optimizer's): it "
            "resumes from that checkpoint."
        )


def _to_floats(terms: Dict[str, Any]) -> Dict[str, float]:
    """Loss terms as Python floats with one device-to-host copy (one GPU sync, not one per term)."""
    device = terms["loss"].device
    stacked = torch.stack([torch.as_tensor(v).detach().float().reshape(()).to(device) for v in terms.values()])
    return dict(zip(terms.keys(), stacked.tolist()))


def _attribute_owner(loss: nn.Module, name: str) -> nn.Module:
    """The loss module (the loss itself or a nested one, e.g. a regularized loss's base) holding ``name``."""
    for module in loss.modules():
        if name in vars(module) and not isinstance(vars(module)[name], (nn.Module, torch.Tensor)):
            return module
    raise ValueError(
        f"config.LOSS_SCHEDULES.{name}: loss {type(loss).__name__} (and its sub-losses) has no "
        f"hyper-parameter attribute {name!r} to schedule."
    )


def _to_device(batch: Dict[str, Any], device: torch.device) -> Dict[str, Any]:
    if device.type == "cpu":
        return batch

    def move(value):
        if isinstance(value, list):
            return [v.to(device, non_blocking=True) for v in value]
        return value.to(device, non_blocking=True)

    return {key: move(value) for key, value in batch.items()}


def stop_requested_on_any_rank() -> bool:
    """Every rank must agree to stop at the same step, else one saves (a collective) while another
    runs the next DDP step; a signal can reach the ranks between their checks."""
    return dist_utils.all_reduce_max(1.0 if preemption.checkpoint_requested() else 0.0) > 0


def train(task: Task) -> Dict[str, Any]:
    """Run (or continue) training until ``task.max_iterations``; return a summary."""
    task.run_hooks("on_start")
    while not task.done:
        # A sampler loaded from a checkpoint keeps its pending mid-epoch position through set_epoch(same epoch).
        task.sampler.set_epoch(task.epoch)
        task.train_loader.dataset.set_epoch(task.epoch)
        # Micro-batches left over at the end of the previous epoch must not leak into this one.
        task.optimizer.zero_grad(set_to_none=True)
        task.run_hooks("on_phase_start")
        for batch in task.train_loader:
            task.step(batch)
            if task.step_in_epoch % task.accumulate == 0 and stop_requested_on_any_rank():
                path = task.save_checkpoint()
                raise preemption.Preempted(path, task.iteration)
            if task.done:
                break
        task.epoch += 1
        task.step_in_epoch = 0
        task.run_hooks("on_phase_end")
    task.run_hooks("on_end")
    summary = {
        "iteration": task.iteration,
        "epoch": task.epoch,
        "final_loss": task.last_loss_terms.get("loss", float("nan")),
        "final_checkpoint": task.last_checkpoint_path,
        "run_dir": task.run_dir,
    }
    return summary
