import os
from numbers import Number

from registry import register_hook
from ssl_ext.hooks.base import SSLHook


@register_hook("tensorboard")
class TensorboardHook(SSLHook):
    """Writes every logged scalar to TensorBoard under ``<run_dir>/tensorboard`` (rank 0)."""

    def __init__(self):
        super().__init__()
        self.writer = None

    def on_start(self, task) -> None:
        if task.rank == 0:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=os.path.join(task.run_dir, "tensorboard"), purge_step=task.iteration or None)

    def write_metrics(self, task, record) -> None:
        if self.writer is None:
            return
        step = int(record["iteration"])
        for key, value in record.items():
            if key not in ("iteration", "epoch") and isinstance(value, Number):
                self.writer.add_scalar(key, value, step)

    def on_end(self, task) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
