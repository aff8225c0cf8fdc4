"""Masked Siamese Networks (MSN) loss.

Assran, Caron, Misra, Bojanowski, Bordes, Vincent, Joulin, Rabbat, Ballas, "Masked
Siamese Networks for Label-Efficient Learning", ECCV 2022, arXiv:2204.07141.
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch

from registry import register_loss
from ssl_ext.losses import functional
from ssl_ext.losses._prototype_matching import PrototypeMatchingLoss
from ssl_ext.losses._views import check_number


@register_loss("msn_loss")
class MSNLoss(PrototypeMatchingLoss):
    """Cross-entropy between anchor predictions and sharpened, Sinkhorn-balanced targets,
    plus the mean-entropy-maximization (me-max) regularizer.

    ``me_max = Σ_k p̄_k log p̄_k + log K`` (= KL(p̄ ‖ uniform) ≥ 0), where p̄ is the mean
    anchor prediction over the global batch; ``loss = ce + regularization_weight * me_max``.
    See ``PrototypeMatchingLoss`` for views, targets and the distributed behaviour.

    Args:
        num_prototypes: K learnable prototypes (MSN: 1024).
        embed_dim: prototype width; must equal the projector's output width (MSN: 256).
        temperature: cosine-similarity temperature of the predictions (0.1).
        sharpen_temperature: target sharpening temperature T (0.25).
        sinkhorn_iterations: Sinkhorn-Knopp steps on the targets (3; 0 disables).
        regularization_weight: lambda of the me-max regularizer (1.0).
        label_smoothing: smoothing of MSN's one-hot prototype labels (0.0).
        anchor_entropy_weight: weight of the mean anchor entropy (0.0: off).

    Without the trainer (the maths is in ``ssl_ext.losses.functional``: ``msn_targets``,
    ``prototype_cross_entropy``, ``mean_prediction``, ``me_max``); the prototypes are the
    loss's parameter:

    >>> import torch
    >>> loss = MSNLoss(num_prototypes=2, embed_dim=2, temperature=1.0)
    >>> with torch.no_grad():
    ...     _ = loss.prototypes.copy_(torch.eye(2))
    >>> terms = loss.forward_tensors(student=[torch.eye(2)], teacher=[torch.eye(2)])  # anchors, target view
    >>> {name: round(value.item(), 4) for name, value in terms.items()}  # p̄ uniform: me_max 0
    {'loss': 0.3312, 'ce': 0.3312, 'me_max': 0.0, 'entropy_pbar': 0.6931}
    """

    loss_name = "msn_loss"

    def __init__(
        self,
        num_prototypes: int = 1024,
        embed_dim: int = 256,
        temperature: float = 0.1,
        sharpen_temperature: float = 0.25,
        sinkhorn_iterations: int = 3,
        regularization_weight: float = 1.0,
        label_smoothing: float = 0.0,
        anchor_entropy_weight: float = 0.0,
    ) -> None:
        super().__init__(
            num_prototypes, embed_dim, temperature, sharpen_temperature, sinkhorn_iterations,
            label_smoothing, anchor_entropy_weight,
        )
        self.regularization_weight = check_number(regularization_weight, "regularization_weight", self.loss_name, minimum=0)
        # The prior MSN implicitly matches; the prior monitor hook compares p̄ with it.
        self.register_buffer(
            "prior", torch.full((self.num_prototypes,), 1.0 / self.num_prototypes, dtype=torch.float64), persistent=False
        )

    def regularizer(self, mean_probs: torch.Tensor) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
        me_max = functional.me_max(mean_probs)
        return {"me_max": me_max}, self.regularization_weight * me_max
