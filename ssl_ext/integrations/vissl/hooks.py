"""Classy hooks that run ssl_ext's per-step machinery inside VISSL's trainer, and their generator.

VISSL picks loss-specific hooks by hard-coded loss names (``add_loss_hooks``); ssl_ext's
losses get theirs from :func:`ssl_ext_hook_generator`, VISSL's ``default_hook_generator``
plus, when ``config.LOSS.name`` is ``ssl_ext_loss``:

* :class:`ViewLayoutHook` (``on_forward``): tells the loss how the batch's crops are laid out;
* :class:`EMATeacherHook` (when ``EMA_TEACHER.ENABLED``): initializes the teacher from the
  student, encodes the teacher views in ``on_forward`` and applies
  ``teacher <- m * teacher + (1 - m) * student`` after every optimizer step, with ``m``
  going linearly from ``MOMENTUM_START`` to ``MOMENTUM_END`` over training (ssl_ext's
  schedule, as for MSN/BYOL) — for every teacher-based ssl_ext loss, whatever its name;
* :class:`LossTermsLogHook`: logs every named term of the loss (ce, kl_prior, ...) next to
  VISSL's loss line and in ``<checkpoint dir>/ssl_ext_loss_terms.jsonl``.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, List

import torch
from classy_vision.hooks.classy_hook import ClassyHook
from vissl.hooks import default_hook_generator
from vissl.models.model_helpers import get_no_ddp_model
from vissl.utils.checkpoint import get_checkpoint_folder
from vissl.utils.env import get_machine_local_and_dist_rank

from ssl_ext.engine.model import ema_update
from ssl_ext.engine.schedules import build_schedule
from ssl_ext.integrations.vissl.loss import CONFIG_KEY, LOSS_NAME, SSLExtLoss
from ssl_ext.integrations.vissl.task import TASK_NAME

logger = logging.getLogger(__name__)


def _ssl_ext_loss(task: Any) -> SSLExtLoss:
    loss = task.base_loss
    if not isinstance(loss, SSLExtLoss):
        raise ValueError(f"this hook runs with config.LOSS.name={LOSS_NAME}, got a {type(loss).__name__}.")
    return loss


class _EventHook(ClassyHook):
    """A Classy hook whose events default to no-ops (Classy makes five of them abstract)."""

    on_start = ClassyHook._noop
    on_phase_start = ClassyHook._noop
    on_forward = ClassyHook._noop
    on_loss_and_meter = ClassyHook._noop
    on_backward = ClassyHook._noop
    on_update = ClassyHook._noop
    on_step = ClassyHook._noop
    on_phase_end = ClassyHook._noop
    on_end = ClassyHook._noop


class ViewLayoutHook(_EventHook):
    """Before the loss is computed, hand it the collated sample so it can pair the views."""

    def on_forward(self, task: Any) -> None:
        _ssl_ext_loss(task).prepare_batch(task.last_batch.sample)


class EMATeacherHook(_EventHook):
    """The EMA teacher of ssl_ext's teacher-based losses (MSN, PMSN, BYOL, multiview centroid, ...).

    The teacher module is built by ``ssl_ext_task`` and stored in the loss, so VISSL's
    checkpoint (which saves ``task.loss.state_dict()``) carries it and a resumed run
    continues from the saved teacher instead of re-copying the student.
    """

    def __init__(self, momentum_start: float, momentum_end: float) -> None:
        super().__init__()
        self.momentum_schedule = build_schedule(
            "linear", float(momentum_start), float(momentum_end), key=f"{CONFIG_KEY}.EMA_TEACHER"
        )
        self.last_momentum: float = float("nan")

    def on_start(self, task: Any) -> None:
        loss = _ssl_ext_loss(task)
        if loss.teacher is None:
            raise ValueError(
                f"{CONFIG_KEY}.EMA_TEACHER.ENABLED needs config.TRAINER.TASK_NAME={TASK_NAME}, which builds the teacher."
            )
        restored = bool(getattr(task, "checkpoint", None)) and "loss" in task.checkpoint
        if not restored:
            # Copy after DDP has broadcast rank 0's weights, so every rank's teacher starts identical.
            student_state = get_no_ddp_model(task.model).state_dict()
            loss.teacher.load_state_dict({name: student_state[name] for name in loss.teacher.state_dict()})

    @torch.no_grad()
    def on_forward(self, task: Any) -> None:
        loss = _ssl_ext_loss(task)
        layout = loss.view_layout
        if layout is None:
            raise RuntimeError("EMATeacherHook must run after ViewLayoutHook; use ssl_ext_hook_generator.")
        views = loss.resolved_views(loss.teacher_view_ids, "TEACHER_VIEWS")
        outputs = loss.teacher(layout.inputs_of(task.last_batch.sample["input"], views))
        outputs = outputs[0] if isinstance(outputs, (list, tuple)) and len(outputs) == 1 else outputs
        if not isinstance(outputs, torch.Tensor):
            raise ValueError("ssl_ext_loss expects one head chain in config.MODEL.HEAD.PARAMS for the teacher too.")
        loss.teacher_outputs = [chunk.detach() for chunk in outputs.chunk(len(views))]

    @torch.no_grad()
    def on_update(self, task: Any) -> None:
        # task.iteration counts finished updates, so this is ssl_ext's where = iteration / max_iterations.
        where = min(task.iteration / max(task.max_iteration, 1), 1.0 - 1e-9)
        self.last_momentum = float(self.momentum_schedule(where))
        ema_update(_ssl_ext_loss(task).teacher, get_no_ddp_model(task.model), self.last_momentum)


class LossTermsLogHook(_EventHook):
    """Log the ssl_ext loss's named terms every ``log_frequency`` iterations (rank 0 only)."""

    def __init__(self, log_frequency: int, checkpoint_folder: str, ema_hook: "EMATeacherHook" = None) -> None:
        super().__init__()
        self.log_frequency = max(int(log_frequency), 1)
        self.path = os.path.join(checkpoint_folder, "ssl_ext_loss_terms.jsonl")
        self.ema_hook = ema_hook

    def on_update(self, task: Any) -> None:
        if task.iteration % self.log_frequency or get_machine_local_and_dist_rank()[1] != 0:
            return
        record = {"iteration": int(task.iteration), **_ssl_ext_loss(task).last_terms}
        if self.ema_hook is not None:
            record["ema_momentum"] = self.ema_hook.last_momentum
        logger.info("ssl_ext loss terms: %s", ", ".join(f"{k}={v:.6g}" for k, v in record.items()))
        with open(self.path, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(record) + "\n")
        for hook in task.hooks:  # VISSL's tensorboard hook, when enabled
            writer = getattr(hook, "tb_writer", None)
            if writer is not None:
                for name, value in record.items():
                    if name != "iteration":
                        writer.add_scalar(f"Losses/ssl_ext/{name}", value, global_step=task.iteration)


def ssl_ext_hooks(cfg: Any) -> List[ClassyHook]:
    """The hooks ssl_ext_loss needs for this config (empty for VISSL's own losses)."""
    if cfg.LOSS.name != LOSS_NAME:
        return []
    if cfg.TRAINER.TASK_NAME != TASK_NAME:
        raise ValueError(
            f"config.LOSS.name={LOSS_NAME} needs config.TRAINER.TASK_NAME={TASK_NAME} (it trains the loss's own "
            f"parameters and builds the EMA teacher); got {cfg.TRAINER.TASK_NAME!r}."
        )
    loss_cfg = cfg.LOSS[LOSS_NAME]
    hooks: List[ClassyHook] = [ViewLayoutHook()]
    ema_cfg = dict(loss_cfg.get("EMA_TEACHER") or {})
    ema_hook = None
    if ema_cfg.get("ENABLED", False):
        ema_hook = EMATeacherHook(ema_cfg.get("MOMENTUM_START", 0.996), ema_cfg.get("MOMENTUM_END", 1.0))
        hooks.append(ema_hook)
    hooks.append(LossTermsLogHook(cfg.LOG_FREQUENCY, get_checkpoint_folder(cfg), ema_hook))
    return hooks


def ssl_ext_hook_generator(cfg: Any) -> List[ClassyHook]:
    """VISSL's ``default_hook_generator`` plus :func:`ssl_ext_hooks`, which run first in every event."""
    return ssl_ext_hooks(cfg) + default_hook_generator(cfg)
