import math

from registry import register_hook
from ssl_ext.errors import RunStopped
from ssl_ext.hooks.base import SSLHook


class NonFiniteLossError(RunStopped, FloatingPointError):
    """A loss term went NaN/Inf; the run stops before it reaches the weights."""


@register_hook("nan_guard")
class NanGuardHook(SSLHook):
    """Stops before a NaN/Inf loss reaches the weights, naming the step, the loss terms and the
    last good checkpoint to resume from. That checkpoint is finite in every tensor: the trainer
    never writes a state holding NaN/Inf (weights, BatchNorm statistics, optimizer moments)."""

    def on_forward(self, task) -> None:
        terms = task.last_loss_terms
        bad = {k: v for k, v in terms.items() if not math.isfinite(v)}
        if not bad:
            return
        last = task.last_checkpoint_path or "none yet (the run has not saved one)"
        raise NonFiniteLossError(
            f"Non-finite loss at epoch {task.epoch}, iteration {task.iteration}, batch {task.step_in_epoch} of the epoch: "
            f"{', '.join(f'{k}={v}' for k, v in sorted(terms.items()))} (non-finite: {', '.join(sorted(bad))}). "
            f"Last good checkpoint: {last}. Lower config.OPTIMIZER.BASE_LR, set config.OPTIMIZER.CLIP_GRAD_NORM, "
            f"or disable AMP, then relaunch the same command with that change (and "
            f"config.CHECKPOINT.ALLOW_RECIPE_CHANGE=true for the optimizer's): it resumes from that checkpoint."
        )
