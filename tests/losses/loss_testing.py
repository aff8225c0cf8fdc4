"""Helpers for the loss tests: model outputs from plain tensors and a 2-process gloo runner."""
from __future__ import annotations

import socket
from typing import Callable, Optional, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ssl_ext.engine.output import ModelOutput


def make_output(student: Sequence[torch.Tensor], teacher: Optional[Sequence[torch.Tensor]] = None) -> ModelOutput:
    return ModelOutput(
        student=list(student),
        teacher=None if teacher is None else list(teacher),
        student_views=list(range(len(student))),
        teacher_views=[] if teacher is None else list(range(len(teacher))),
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _init_and_run(rank: int, world_size: int, port: int, fn: Callable, args: tuple) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        fn(rank, world_size, *args)
    finally:
        dist.destroy_process_group()


def run_on_gloo_ranks(fn: Callable, world_size: int, *args) -> None:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` spawned gloo processes on 127.0.0.1.

    ``fn`` must be importable (module level); results travel through files.
    """
    mp.spawn(_init_and_run, args=(world_size, free_port(), fn, args), nprocs=world_size, join=True)
