from __future__ import annotations

import os
import uuid

from registry import register_hook
from ssl_ext.hooks import _tracking
from ssl_ext.hooks.base import SSLHook

RUN_ID_FILE = "wandb_run_id.txt"
PLOT_PREFIX = "plots/"


@register_hook("wandb_logger")
class WandbLoggerHook(SSLHook):
    """Logs a run to Weights & Biases (rank 0): the metrics.jsonl scalars, the config and the end-of-run plots.

    Turned on with ``config.HOOKS.WANDB.ENABLED=true`` (needs ``pip install 'ssl_ext[wandb]'``),
    configured by ``config.HOOKS.WANDB``: ``PROJECT``, ``ENTITY``, ``NAME`` (default: the run
    directory's name), ``TAGS`` and ``MODE`` (``online``, ``offline`` to sync later with
    ``wandb sync``, ``disabled``; empty: W&B's own default or ``WANDB_MODE``). W&B's files go
    to ``<run_dir>/wandb``.

    Every record is logged at ``step = iteration``; the composed config is the run's config
    and ``train_config.yaml`` is saved with it; at the end every ``*.png`` of the run
    directory is logged as an image under ``plots/<name>``. A relaunch that resumes the
    training resumes the same W&B run (its id is kept in ``<run_dir>/wandb_run_id.txt``).
    """

    SWITCH = "config.HOOKS.WANDB.ENABLED"

    def __init__(self) -> None:
        super().__init__()
        _tracking.require_package("wandb", "wandb", self.SWITCH)
        self.run = None

    def on_start(self, task) -> None:
        if task.rank != 0:
            return
        import wandb

        settings = task.cfg.config.HOOKS.WANDB
        run_id = _tracking.saved_run_id(task.run_dir, RUN_ID_FILE)
        if run_id is None:
            run_id = uuid.uuid4().hex[:12]  # OS entropy: the training's seeded generators are left alone
            _tracking.save_run_id(task.run_dir, RUN_ID_FILE, run_id)
        self.run = wandb.init(
            project=str(settings.PROJECT),
            entity=str(settings.ENTITY) or None,
            name=_tracking.default_run_name(task, str(settings.NAME)),
            tags=[str(tag) for tag in settings.TAGS] or None,
            mode=str(settings.MODE) or None,
            dir=task.run_dir,
            id=run_id,
            resume="allow",
            config=_tracking.config_dict(task),
        )
        config_file = os.path.join(task.run_dir, "train_config.yaml")
        if os.path.exists(config_file):
            self.run.save(config_file, base_path=task.run_dir, policy="now")

    def write_metrics(self, task, record) -> None:
        if self.run is None:
            return
        step, values = _tracking.scalars(record)
        self.run.log(values, step=step)

    def on_end(self, task) -> None:
        if self.run is None:
            return
        import wandb

        plots = {
            PLOT_PREFIX + os.path.splitext(os.path.basename(path))[0]: wandb.Image(path)
            for path in _tracking.run_plots(task.run_dir)
        }
        if plots:
            self.run.log(plots, step=task.iteration)
        self.run.finish()
        self.run = None
