"""Helpers for the loss tests: model outputs from plain tensors and a 2-process gloo runner."""
from __future__ import annotations

import socket
from typing import Callable, Optional, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ssl_ext.engine.output import ModelOutput


def make_output(student: Sequence[torch.Tensor], teacher: Optional[Sequence[torch.Tensor]] = None,
                extras: Optional[dict] = None) -> ModelOutput:
    return ModelOutput(
        student=list(student),
        teacher=None if teacher is None else list(teacher),
        student_views=list(range(len(student))),
        teacher_views=[] if teacher is None else list(range(len(teacher))),
        extras=dict(extras or {}),
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
# Losses whose training forward pass updates state carried by checkpoints (DINO's center, SwAV's
# step counter and queue): ``call_loss`` restores it after each call so repeated calls see the same function.
STATEFUL_LOSSES = {"swav_loss", "pswav_loss", "dino_loss", "pdino_loss"}
# Student views that also produce the loss's stop-gradient targets (SwAV's codes come from views 0 and 1):
# a finite difference over them moves the targets too, so gradcheck holds them fixed (the SwAV tests
# check their gradient against lightly).
FIXED_GRADCHECK_VIEWS = {"swav_loss": (0, 1), "pswav_loss": (0, 1)}


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
        "swav_loss": lambda: ({"num_prototypes": 5, "embed_dim": 3, "temperature": 0.5, "epsilon": 0.3}, views(4), None),
        "pswav_loss": lambda: (
            {"num_prototypes": 5, "embed_dim": 3, "temperature": 0.5, "epsilon": 0.3,
             "prior": {"NAME": "power_law", "PARAMS": {"tau": 0.5}}},
            views(4),
            None,
        ),
        "dino_loss": lambda: ({"out_dim": 3, "teacher_temperature": 0.2, "regularization_weight": 0.5}, views(3), views(2)),
        "pdino_loss": lambda: (
            {"out_dim": 3, "teacher_temperature": 0.2, "regularization_weight": 0.5,
             "prior": {"NAME": "power_law", "PARAMS": {"tau": 0.5}}},
            views(3),
            views(2),
        ),
        # 2 images of 4x4 pixels, 1 channel, 2x2 patches: 4 patches of 4 values.
        "mae_loss": lambda: ({"patch_size": 2}, [torch.randn(2, 16, generator=g, dtype=dtype)], None),
        # predictions (N, 1 + patches, D) and the teacher's K=2 block outputs (N, K, patches, D).
        "data2vec_loss": lambda: ({}, [torch.randn(2, 5, 3, generator=g, dtype=dtype)],
                                  [torch.randn(2, 2, 4, 3, generator=g, dtype=dtype)]),
    }
    if name not in cases:
        raise KeyError(f"no tiny test case for loss {name!r}: add one to tests/losses/loss_testing.py")
    return cases[name]()


def tiny_context(name: str, dtype=torch.float64, seed: int = 1):
    """(batch, extras) that a loss reads beside the embeddings: the images and the trunk's patch mask
    of the masked-image-modelling losses; empty for the others."""
    g = torch.Generator().manual_seed(seed)
    mask = [torch.tensor([[True, False, True, True], [False, True, True, False]])]
    if name == "mae_loss":
        return {"views": [torch.randn(2, 1, 4, 4, generator=g, dtype=dtype)]}, {"student_patch_mask": mask}
    if name == "data2vec_loss":
        return {}, {"student_patch_mask": mask}
    return {}, {}


def call_loss(name: str, loss, student, teacher=None, dtype=torch.float64):
    """``loss`` on a ModelOutput of ``student``/``teacher`` plus the loss's tiny context; returns its dict of terms."""
    batch, extras = tiny_context(name, dtype)
    state = {k: v.clone() for k, v in loss.state_dict().items()} if name in STATEFUL_LOSSES else None
    terms = loss(make_output(list(student), teacher, extras), batch)
    if state is not None:
        loss.load_state_dict(state)
    return terms if isinstance(terms, dict) else {"loss": terms}
