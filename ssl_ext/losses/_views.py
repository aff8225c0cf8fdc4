"""Checks shared by the losses on the per-view embeddings of a ModelOutput."""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch


def check_embeddings(tensors: Sequence[torch.Tensor], loss_name: str, what: str = "student") -> None:
    """Every view must be a 2-D ``(N, D)`` tensor with the same shape as the first one."""
    if len(tensors) == 0:
        raise ValueError(f"{loss_name}: got no {what} views; check MODEL.STUDENT_VIEWS / MODEL.TEACHER_VIEWS")
    first = tensors[0]
    for i, t in enumerate(tensors):
        if not isinstance(t, torch.Tensor) or t.dim() != 2:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{loss_name}: {what} view {i} must be an (N, D) embedding tensor, got {shape}")
        if t.shape != first.shape:
            raise ValueError(
                f"{loss_name}: {what} views must share one shape, view 0 is {tuple(first.shape)} "
                f"and view {i} is {tuple(t.shape)}"
            )


def student_views(output, loss_name: str, minimum: int = 1) -> List[torch.Tensor]:
    views = list(output.student or [])
    if len(views) < minimum:
        raise ValueError(
            f"{loss_name} needs at least {minimum} student views, got {len(views)}; "
            f"set MODEL.STUDENT_VIEWS and the TRANSFORM to produce them"
        )
    return views


def teacher_views(output, loss_name: str, minimum: int = 1) -> List[torch.Tensor]:
    views = list(output.teacher or [])
    if len(views) < minimum:
        raise ValueError(
            f"{loss_name} needs at least {minimum} teacher views, got {len(views)}; "
            f"enable MODEL.EMA_TEACHER and set MODEL.TEACHER_VIEWS"
        )
    return views


def two_student_views(output, loss_name: str) -> Tuple[torch.Tensor, torch.Tensor]:
    views = student_views(output, loss_name, minimum=2)
    if len(views) != 2:
        raise ValueError(
            f"{loss_name} compares exactly 2 student views, got {len(views)}; set MODEL.STUDENT_VIEWS to two views"
        )
    return views[0], views[1]
