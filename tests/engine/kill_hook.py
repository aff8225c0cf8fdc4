"""A test-only hook that SIGKILLs its own process group at chosen points of a run (imported
through ``config.PLUGINS``). Each point fires once: a marker file records that it fired, so the
relaunch of the same command runs past it."""
import os
import signal
from typing import List, Sequence

from registry import register_hook
from ssl_ext.hooks.base import SSLHook


@register_hook("sigkill_process_group")
class SigkillProcessGroup(SSLHook):
    """``points``: ``[event, epoch, step_in_epoch]`` triples, e.g. ``["on_update", 0, 3]``.

    The kill comes from rank 0 after every hook before this one (the checkpoint hook included)
    has run for that event: the whole process group (launcher and every rank) dies at once, with
    no chance to clean up, as with ``kill -9 -PGID``.
    """

    def __init__(self, points: Sequence[Sequence], marker_dir: str):
        super().__init__()
        self.points: List[tuple] = [(str(e), int(ep), int(st)) for e, ep, st in points]
        self.marker_dir = marker_dir

    def _maybe_kill(self, event: str, task) -> None:
        if task.rank != 0:
            return
        for point in self.points:
            if point != (event, task.epoch, task.step_in_epoch):
                continue
            marker = os.path.join(self.marker_dir, "killed_at_{}_{}_{}".format(*point))
            if os.path.exists(marker):
                continue
            os.makedirs(self.marker_dir, exist_ok=True)
            with open(marker, "w") as f:
                f.write(str(task.iteration))
            os.killpg(os.getpgrp(), signal.SIGKILL)

    def on_forward(self, task) -> None:
        self._maybe_kill("on_forward", task)

    def on_update(self, task) -> None:
        self._maybe_kill("on_update", task)

    def on_step(self, task) -> None:
        self._maybe_kill("on_step", task)
