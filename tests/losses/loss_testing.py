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
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` gloo processes on 127.0.0.1.

    Started with torch.multiprocessing; "fork" where available, because spawned
    children re-import torch and every plugin (tens of seconds on a loaded 2-core
    machine) while forked ones share the parent's imports. ``fn`` must be a module
    level function; results travel through files.
    """
    start_method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(
        _init_and_run, args=(world_size, free_port(), fn, args), nprocs=world_size, join=True, start_method=start_method
    )


# Small inputs for every built-in loss: (PARAMS, student views, teacher views).
# Losses that draw noise are marked RANDOM so tests re-seed before each call.
RANDOM_LOSSES = {"brownian_diffusive_loss", "msbreg_loss"}


def tiny_case(name: str, dtype=torch.float64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)

    def views(count, n=4, dim=3):
        return [torch.randn(n, dim, generator=g, dtype=dtype) for _ in range(count)]

    prototype_params = {"num_prototypes": 5, "embed_dim": 3, "temperature": 0.5, "label_smoothing": 0.1,
                        "anchor_entropy_weight": 0.5}
    cases = {
        "simclr_loss": lambda: ({"temperature": 0.5}, views(2), None),
        "vicreg_loss": lambda: ({}, views(2, n=5), None),
        "byol_loss": lambda: ({}, views(2), views(2)),
        "multiview_centroid_loss": lambda: ({}, views(3), views(3)),
        "singular_value_loss": lambda: ({}, views(2, n=5), None),
        "brownian_diffusive_loss": lambda: ({}, views(1), None),
        "msn_loss": lambda: (dict(prototype_params), views(3), views(1)),
        "pmsn_loss": lambda: (
            {**prototype_params, "prior": {"NAME": "power_law", "PARAMS": {"tau": 0.5}}, "sinkhorn_prior": True},
            views(3),
            views(1),
        ),
        "msbreg_loss": lambda: ({"singular_value_weight": 0.1}, views(2), views(2)),
    }
    if name not in cases:
        raise KeyError(f"no tiny test case for loss {name!r}: add one to tests/losses/loss_testing.py")
    return cases[name]()
