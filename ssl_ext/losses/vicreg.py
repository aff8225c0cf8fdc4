"""VICReg: Variance-Invariance-Covariance Regularization.

Bardes, Ponce, LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", ICLR 2022, arXiv:2105.04906.
"""
from __future__ import annotations

from typing import Dict

import torch

from registry import register_loss
from ssl_ext.losses._views import autocast_off, check_embeddings, check_number, full_precision, two_student_views
from ssl_ext.losses.base import SSLLoss
from ssl_ext.losses.functional import vicreg_terms


@register_loss("vicreg_loss")
class VICRegLoss(SSLLoss):
    """``invariance_weight * MSE(z_a, z_b) + variance_weight * v + covariance_weight * c``.

    * invariance: mean squared difference of the paired embeddings (over samples and
      dimensions), averaged over the global batch;
    * variance ``v``: for each view, mean over dimensions of ``relu(std_target − sqrt(var + eps))``
      with the unbiased variance over the *global* batch; averaged over the two views;
    * covariance ``c``: for each view, the sum of squared off-diagonal entries of the
      global-batch covariance divided by the dimension; summed over the two views.

    The global statistics are taken on the all-gathered embeddings (with gradients), as
    the paper's reference implementation does, so 2 ranks with half the batch each give
    the loss and gradients of one process with the whole batch.

    Args:
        invariance_weight, variance_weight, covariance_weight: lambda, mu, nu (25, 25, 1).
        std_target: the hinge target gamma of the standard deviation (1.0).
        eps: added to the variance for numerical stability (1e-4).

    Without the trainer (the maths is ``ssl_ext.losses.functional.vicreg_terms``):

    >>> import torch
    >>> z = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])  # dimension 1 has collapsed
    >>> terms = VICRegLoss().forward_tensors(student=[z, z.clone()])
    >>> {name: round(value.item(), 4) for name, value in terms.items()}  # 25 * (1 - sqrt(1e-4)) / 2
    {'loss': 12.375, 'invariance': 0.0, 'variance': 0.495, 'covariance': 0.0}
    """

    def __init__(
        self,
        invariance_weight: float = 25.0,
        variance_weight: float = 25.0,
        covariance_weight: float = 1.0,
        std_target: float = 1.0,
        eps: float = 1e-4,
    ) -> None:
        super().__init__()
        name = "vicreg_loss"
        self.invariance_weight = check_number(invariance_weight, "invariance_weight", name, minimum=0)
        self.variance_weight = check_number(variance_weight, "variance_weight", name, minimum=0)
        self.covariance_weight = check_number(covariance_weight, "covariance_weight", name, minimum=0)
        self.std_target = check_number(std_target, "std_target", name, minimum=0, strict_min=True)
        self.eps = check_number(eps, "eps", name, minimum=0, strict_min=True)

    def forward(self, output, batch=None) -> Dict[str, torch.Tensor]:
        view_a, view_b = two_student_views(output, "vicreg_loss")
        check_embeddings([view_a, view_b], "vicreg_loss")
        with autocast_off(view_a):
            terms = vicreg_terms(full_precision(view_a), full_precision(view_b), self.std_target, self.eps)
            loss = (
                self.invariance_weight * terms["invariance"]
                + self.variance_weight * terms["variance"]
                + self.covariance_weight * terms["covariance"]
            )
        return {"loss": loss, **terms}
