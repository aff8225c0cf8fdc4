import json
import os

from registry import register_hook
from ssl_ext.hooks.base import SSLHook
from ssl_ext.utils.io import append_line, atomic_write_text, path_manager, read_text


@register_hook("metrics_jsonl")
class MetricsJsonlHook(SSLHook):
    """Appends every logged record to ``<run_dir>/metrics.jsonl`` (rank 0).

    On resume, records newer than the checkpoint's iteration (written by the
    interrupted run after its last checkpoint) are dropped, so the file reads as
    one uninterrupted run.
    """

    def __init__(self, filename: str = "metrics.jsonl"):
        super().__init__()
        self.filename = filename

    def path(self, task) -> str:
        return os.path.join(task.run_dir, self.filename)

    def on_start(self, task) -> None:
        if task.rank != 0 or not path_manager.exists(self.path(task)):
            return
        if task.resumed_from is None:
            # Training starts from iteration 0 over an older log (e.g. CHECKPOINT.ON_UNREADABLE=start_over):
            # keep the old records aside rather than appending a second 1..N to them.
            aside = self.path(task) + ".before-start-over"
            atomic_write_text(aside, read_text(self.path(task)))
            path_manager.rm(self.path(task))
            return
        kept = [
            line for line in read_text(self.path(task)).splitlines()
            if line.strip() and json.loads(line).get("iteration", 0) <= task.iteration
        ]
        atomic_write_text(self.path(task), "".join(line + "\n" for line in kept))

    def write_metrics(self, task, record) -> None:
        if task.rank == 0:
            append_line(self.path(task), json.dumps(record))
