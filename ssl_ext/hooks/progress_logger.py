import logging
import sys
import time

from registry import register_hook
from ssl_ext.hooks.base import SSLHook

logger = logging.getLogger("ssl_ext.train")


@register_hook("progress_logger")
class ProgressLoggerHook(SSLHook):
    """Loss, lr, throughput and ETA every ``HOOKS.LOG_FREQUENCY`` updates, as a record for the metric
    sinks and on screen: a tqdm bar in a terminal, plain lines elsewhere (SLURM logs)."""

    def __init__(self):
        super().__init__()
        self.bar = None

    def _use_bar(self, task) -> bool:
        setting = str(task.cfg.config.HOOKS.PROGRESS_BAR).lower()
        if setting == "auto":
            return sys.stderr.isatty()
        return setting == "on"

    def on_start(self, task) -> None:
        self.every = max(int(task.cfg.config.HOOKS.LOG_FREQUENCY), 1)
        self.window_start, self.window_images = time.perf_counter(), 0
        self.run_start, self.start_iteration = time.perf_counter(), task.iteration
        if task.rank == 0 and self._use_bar(task):
            from tqdm import tqdm

            self.bar = tqdm(total=task.max_iterations, initial=task.iteration, desc="train", dynamic_ncols=True)

    def on_step(self, task) -> None:
        self.window_images += task.batch["label"].shape[0] * task.world_size

    def on_update(self, task) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{task.last_loss_terms.get('loss', float('nan')):.4f}", lr=f"{task.lr:.3g}")
        if task.iteration % self.every and task.iteration != task.max_iterations:
            return
        now = time.perf_counter()
        throughput = self.window_images / max(now - self.window_start, 1e-9)
        done = task.iteration - self.start_iteration
        eta = (now - self.run_start) / max(done, 1) * (task.max_iterations - task.iteration)
        record = {**task.last_loss_terms, "lr": task.lr, "weight_decay": task.weight_decay,
                  "images_per_sec": throughput, "eta_sec": eta}
        if task.teacher is not None:
            record["ema_momentum"] = task.ema_momentum
        task.log_metrics(record)
        if task.rank == 0 and self.bar is None:
            terms = " ".join(f"{k}={v:.4f}" for k, v in task.last_loss_terms.items())
            logger.info(
                "epoch %d iter %d/%d %s lr=%.4g %.1f img/s eta %s", task.epoch, task.iteration, task.max_iterations,
                terms, task.lr, throughput, time.strftime("%H:%M:%S", time.gmtime(eta)),
            )
        self.window_start, self.window_images = now, 0

    def on_end(self, task) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
