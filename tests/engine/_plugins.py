"""Test-only hooks that interrupt or poison a run at a chosen iteration (registered on import)."""
import torch

from registry import register_hook
from ssl_ext.engine import preemption
from ssl_ext.hooks.base import SSLHook


class SimulatedCrash(RuntimeError):
    pass


@register_hook("test_crash_at")
class CrashAtHook(SSLHook):
    """Raises (like a killed job) right after optimizer update ``iteration``."""

    def __init__(self, iteration: int):
        super().__init__()
        self.iteration = iteration

    def on_update(self, task) -> None:
        if task.iteration == self.iteration:
            raise SimulatedCrash(f"simulated crash at iteration {task.iteration}")


@register_hook("test_preempt_at")
class PreemptAtHook(SSLHook):
    """Asks for checkpoint-and-exit at ``iteration``, as SLURM's pre-timeout signal does."""

    def __init__(self, iteration: int):
        super().__init__()
        self.iteration = iteration

    def on_update(self, task) -> None:
        if task.iteration == self.iteration:
            preemption.request_checkpoint_and_exit()


@register_hook("test_poison_weights_at")
class PoisonWeightsHook(SSLHook):
    """Writes a NaN into the trunk's first parameter after update ``iteration``."""

    def __init__(self, iteration: int):
        super().__init__()
        self.iteration = iteration

    def on_update(self, task) -> None:
        if task.iteration == self.iteration:
            with torch.no_grad():
                next(task.student.trunk.parameters()).view(-1)[0] = float("nan")


@register_hook("test_dtype_probe")
class DtypeProbeHook(SSLHook):
    """Records the dtype of the student's first output at every forward (class-level, for the test to read)."""

    seen = []

    def on_forward(self, task) -> None:
        DtypeProbeHook.seen.append(task.last_output.student[0].dtype)


@register_hook("test_inf_batchnorm_stat_at")
class InfBatchNormStatHook(SSLHook):
    """Puts an infinity into the first BatchNorm's running variance after update ``iteration``: in
    training mode BN uses batch statistics, so the loss stays finite while the state is not."""

    def __init__(self, iteration: int):
        super().__init__()
        self.iteration = iteration

    def on_update(self, task) -> None:
        if task.iteration == self.iteration:
            bn = next(m for m in task.student.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
            bn.running_var[0] = float("inf")
