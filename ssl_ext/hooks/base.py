"""Base class of ssl_ext hooks: Classy Vision's ClassyHook plus VISSL's finer events."""
from __future__ import annotations

from classy_vision.hooks import ClassyHook


class SSLHook(ClassyHook):
    """Observer of the training loop; override only the events you need.

    Events, in order: on_start -> (on_phase_start -> (on_forward -> on_backward ->
    on_update -> on_step)* -> on_phase_end)* -> on_end. ``on_update`` runs after
    an optimizer step; ``on_step`` after every step (also accumulation steps).
    Each receives the running ``ssl_ext.engine.trainer.Task``.
    """

    def on_start(self, task) -> None:
        pass

    def on_phase_start(self, task) -> None:
        pass

    def on_forward(self, task) -> None:
        pass

    def on_backward(self, task) -> None:
        pass

    def on_update(self, task) -> None:
        pass

    def on_step(self, task) -> None:
        pass

    def on_phase_end(self, task) -> None:
        pass

    def on_end(self, task) -> None:
        pass

    def state_dict(self) -> dict:
        """State saved in checkpoints (for hooks whose behaviour depends on history)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
