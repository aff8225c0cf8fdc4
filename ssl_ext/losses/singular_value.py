"""MSBReg's singular value loss (the global dispersive force).

Moon, Buracas, Park, Kim, Canny, "An Embedding-Dynamic Approach to Self-supervised
Learning", arXiv:2207.03552.
"""
from __future__ import annotations

from typing import Dict

import torch

from registry import register_loss
from ssl_ext.losses._views import autocast_off, check_embeddings, full_precision, student_views
from ssl_ext.losses.base import SSLLoss
from ssl_ext.losses.functional import singular_value_loss


@register_loss("singular_value_loss")
class SingularValueLoss(SSLLoss):
    """``−Σ σ_j(Z)``: minus the nuclear norm of the global batch of embeddings.

    ``Z`` is the ``(N_global, D)`` matrix of one view's embeddings, all-gathered across
    ranks with gradients, rows L2-normalized (``normalize``, default true). Unit rows
    fix ``‖Z‖_F² = Σ σ_j² = N``, so maximizing ``Σ σ_j`` spreads the spectrum evenly:
    from ``−sqrt(N)`` for a collapsed batch (rank 1) down to ``−N`` for orthonormal
    rows. Gradients flow through ``torch.linalg.svdvals``. With several student views
    the loss is the mean over views (each view's batch is a particle system of its own).

    ``center`` (default false) subtracts the global mean embedding first, making the
    loss measure spread around the centroid rather than around the origin; the paper
    does not center, and neither do we by default.

    Without the trainer (the maths is ``ssl_ext.losses.functional.singular_value_loss``):

    >>> import torch
    >>> collapsed, spread = torch.ones(4, 6), torch.eye(6)[:4]
    >>> [round(SingularValueLoss().forward_tensors(student=[z])["loss"].item(), 4) for z in (collapsed, spread)]
    [-2.0, -4.0]
    """

    def __init__(self, normalize: bool = True, center: bool = False) -> None:
        super().__init__()
        for key, value in (("normalize", normalize), ("center", center)):
            if not isinstance(value, bool):
                raise ValueError(f"singular_value_loss: {key} must be true or false, got {value!r}")
        self.normalize, self.center = normalize, center

    def forward(self, output, batch=None) -> Dict[str, torch.Tensor]:
        views = student_views(output, "singular_value_loss")
        check_embeddings(views, "singular_value_loss")
        with autocast_off(views[0]):
            loss = sum(singular_value_loss(full_precision(v), self.normalize, self.center) for v in views) / len(views)
        return {"loss": loss}
