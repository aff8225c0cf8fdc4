from registry import register_hook
from ssl_ext.hooks.base import SSLHook


@register_hook("checkpoint")
class CheckpointHook(SSLHook):
    """Saves a checkpoint every ``CHECKPOINT_FREQUENCY`` epochs, every ``CHECKPOINT_ITER_FREQUENCY``
    optimizer updates, and at the end of training (atomic writes, keep-last-N: ``engine.checkpoint``)."""

    def on_update(self, task) -> None:
        every = int(task.cfg.config.CHECKPOINT.CHECKPOINT_ITER_FREQUENCY)
        if every > 0 and task.iteration % every == 0:
            task.save_checkpoint()

    def on_phase_end(self, task) -> None:
        every = int(task.cfg.config.CHECKPOINT.CHECKPOINT_FREQUENCY)
        if task.done or (every > 0 and task.epoch % every == 0):
            task.save_checkpoint()
