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


def full_precision(tensor: torch.Tensor) -> torch.Tensor:
    """Losses compute in float32 (or float64 in tests) even when the model ran under AMP."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def autocast_off(tensor: torch.Tensor):
    """A context that disables autocast on ``tensor``'s device, so loss matmuls/logs stay in full precision."""
    return torch.autocast(device_type=tensor.device.type, enabled=False)


def view_ids(output) -> Tuple[List[int], List[int]]:
    """Batch view index of every student and teacher output (positions when the output does not say)."""
    n_student, n_teacher = len(output.student or []), len(output.teacher or [])
    student = list(output.student_views) if len(output.student_views or []) == n_student else list(range(n_student))
    teacher = list(output.teacher_views) if len(output.teacher_views or []) == n_teacher else list(range(n_teacher))
    return student, teacher


def check_number(value, name: str, loss_name: str, minimum=None, maximum=None, strict_min=False, strict_max=False,
                 integer=False) -> float:
    """Validate a numeric hyper-parameter and return it as float (or int)."""
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"{loss_name}: {name} must be {'an integer' if integer else 'a number'}, got {value!r}")
    low_ok = minimum is None or (value > minimum if strict_min else value >= minimum)
    high_ok = maximum is None or (value < maximum if strict_max else value <= maximum)
    if not (low_ok and high_ok):
        low = "" if minimum is None else f"{'>' if strict_min else '>='} {minimum}"
        high = "" if maximum is None else f"{'<' if strict_max else '<='} {maximum}"
        raise ValueError(f"{loss_name}: {name} must be {' and '.join(p for p in (low, high) if p)}, got {value!r}")
    return int(value) if integer else float(value)
