"""BYOL: Bootstrap Your Own Latent.

Grill et al., "Bootstrap your own latent: A new approach to self-supervised
Learning", NeurIPS 2020, arXiv:2006.07733.
"""
from __future__ import annotations

from typing import Dict

import torch

from registry import register_loss
from ssl_ext.losses._views import (
    autocast_off, check_embeddings, full_precision, student_views, teacher_views, view_ids,
)
from ssl_ext.losses.base import SSLLoss
from ssl_ext.losses.functional import byol_regression


@register_loss("byol_loss")
class BYOLLoss(SSLLoss):
    """Symmetrized ``2 − 2·cos(q(v), z'(v'))`` between student predictions and teacher targets.

    Student outputs are the online network's predictor outputs (``MODEL.STUDENT_ONLY_HEADS``),
    teacher outputs the EMA network's projections, both of the same two views. Each
    student view is compared with the teacher output of the *other* view (matched by
    batch view index), and the two directions are summed as in the paper's
    ``L + L~``, so the loss lies in [0, 8]. Averaged over the global batch.

    Without the trainer (the maths is ``ssl_ext.losses.functional.byol_regression``):

    >>> import torch
    >>> p0, p1 = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 0.5]])  # online predictions of views 0, 1
    >>> z0, z1 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])  # target projections of views 0, 1
    >>> BYOLLoss().forward_tensors(student=[p0, p1], teacher=[z0, z1])["loss"].item()  # p0 vs z1, p1 vs z0: 2 + 2
    4.0
    """

    def __init__(self) -> None:
        super().__init__()

    def forward(self, output, batch=None) -> Dict[str, torch.Tensor]:
        online = student_views(output, "byol_loss", minimum=2)
        targets = teacher_views(output, "byol_loss", minimum=2)
        student_ids, teacher_ids = view_ids(output)
        if len(online) != 2 or sorted(student_ids) != sorted(teacher_ids):
            raise ValueError(
                f"byol_loss needs the same 2 views for student and teacher, got student views {student_ids} and "
                f"teacher views {teacher_ids}; set MODEL.STUDENT_VIEWS and MODEL.TEACHER_VIEWS to the same two views"
            )
        check_embeddings(online + targets, "byol_loss", "student/teacher")
        by_view = dict(zip(teacher_ids, targets))
        with autocast_off(online[0]):
            loss = 0
            for view, prediction in zip(student_ids, online):
                other = next(v for v in student_ids if v != view)
                loss = loss + byol_regression(full_precision(prediction), full_precision(by_view[other]))
        return {"loss": loss}
