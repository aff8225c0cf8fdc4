"""MSBReg's multiview centroid loss (the attractive force between views of one image).

Moon, Buracas, Park, Kim, Canny, "An Embedding-Dynamic Approach to Self-supervised
Learning", arXiv:2207.03552.
"""
from __future__ import annotations

from typing import Dict

import torch

from registry import register_loss
from ssl_ext.losses._views import (
    autocast_off, check_embeddings, full_precision, student_views, teacher_views, view_ids,
)
from ssl_ext.losses.base import SSLLoss
from ssl_ext.losses.functional import multiview_centroid


@register_loss("multiview_centroid_loss")
class MultiviewCentroidLoss(SSLLoss):
    """Pull every online view toward the stop-gradient centroid of the target views.

    With ``K`` views per image (2, 4 or 8), student outputs are the online network's
    predictions and teacher outputs the EMA target network's projections. For image
    ``i`` the target centroid is ``c_i = mean_k normalize(t_{k,i})``; each online view
    contributes ``2 − 2·cos(q_{k,i}, c_i)`` (the BYOL form; the centroid is not unit
    norm, so the cosine normalizes it). The loss is the mean over views and the global
    batch.

    ``leave_one_out`` (default false, the paper's centroid over all views): when true,
    view ``k``'s centroid omits the target of view ``k`` itself (matched by batch view
    index), so with ``K = 2`` the loss is BYOL's cross-view loss averaged over the two
    directions.

    Without the trainer (the maths is ``ssl_ext.losses.functional.multiview_centroid``):

    >>> import torch
    >>> online = [torch.tensor([[1.0, 0.0]]), torch.tensor([[3.0, 3.0]])]
    >>> targets = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])]  # centroid (0.5, 0.5)
    >>> round(MultiviewCentroidLoss().forward_tensors(student=online, teacher=targets)["loss"].item(), 4)
    0.2929
    """

    def __init__(self, leave_one_out: bool = False) -> None:
        super().__init__()
        if not isinstance(leave_one_out, bool):
            raise ValueError(f"multiview_centroid_loss: leave_one_out must be true or false, got {leave_one_out!r}")
        self.leave_one_out = leave_one_out

    def forward(self, output, batch=None) -> Dict[str, torch.Tensor]:
        name = "multiview_centroid_loss"
        online = student_views(output, name)
        targets = teacher_views(output, name, minimum=2 if self.leave_one_out else 1)
        check_embeddings(online + targets, name, "student/teacher")
        student_ids, teacher_ids = view_ids(output)
        with autocast_off(online[0]):
            loss = multiview_centroid(
                [full_precision(p) for p in online], [full_precision(t) for t in targets], self.leave_one_out,
                student_ids, teacher_ids,
            )
        return {"loss": loss}
