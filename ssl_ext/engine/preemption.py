"""A process-wide request to checkpoint now and stop, set from a signal handler.

SLURM (through submitit's ``checkpoint()``) or any other launcher calls
``request_checkpoint_and_exit()``; the trainer checks ``checkpoint_requested()``
after every step, saves a checkpoint at that iteration and raises ``Preempted``.
"""
import threading

_requested = threading.Event()


class Preempted(Exception):
    """Raised by the trainer after it saved a checkpoint because a stop was requested."""

    def __init__(self, checkpoint_path: str, iteration: int):
        super().__init__(f"Stopped at iteration {iteration} on request; checkpoint saved at {checkpoint_path}")
        self.checkpoint_path = checkpoint_path
        self.iteration = iteration


def request_checkpoint_and_exit() -> None:
    _requested.set()


def checkpoint_requested() -> bool:
    return _requested.is_set()


def clear_request() -> None:
    _requested.clear()
