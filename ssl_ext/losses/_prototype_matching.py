"""What MSN and PMSN share: prototypes, anchor predictions, Sinkhorn targets, cross-entropy.

Assran et al., "Masked Siamese Networks for Label-Efficient Learning", ECCV 2022,
arXiv:2204.07141; "The Hidden Uniform Cluster Prior in Self-Supervised Learning",
ICLR 2023, arXiv:2210.07277. The two losses differ only in the regularizer on p̄.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from ssl_ext.losses import functional
from ssl_ext.losses._views import (
    autocast_off, check_embeddings, check_number, full_precision, student_views, teacher_views,
)
from ssl_ext.losses.base import SSLLoss


class PrototypeMatchingLoss(SSLLoss):
    """MSN's objective without its regularizer; subclasses define ``regularizer(mean_probs)``.

    Views: the teacher gives exactly one view (MSN's *target* view); the student gives
    the anchor view and any focal views, each matched to that one target view.

    * anchor predictions ``p = softmax(cos(z, prototypes) / temperature)``, mixed with
      ``label_smoothing / K`` as MSN's smoothed one-hot prototype labels do;
    * targets: the same with the teacher's outputs and the (stop-gradient) prototypes,
      sharpened ``p^(1/sharpen_temperature)`` (computed in log space, which is the same
      value without underflow), then ``sinkhorn_iterations`` Sinkhorn-Knopp steps over
      the global batch (0 disables);
    * ``ce = H(targets, p)`` averaged over all anchor rows of all views and ranks;
    * ``mean_probs = p̄``: the mean of ``p`` over every anchor row of the global batch,
      all-reduced with gradient; kept (detached) as ``last_mean_probs`` for the prior
      monitor hook;
    * optional ``anchor_entropy_weight`` times the mean entropy of ``p`` (MSN's
      ``use_ent`` option, off by default as in MSN's configs).

    The prototypes (``K x embed_dim``, MSN's uniform(±1/sqrt(dim)) initialization) are a
    parameter of the loss; their name contains ``prototypes`` so the trainer exempts them
    from weight decay unless ``OPTIMIZER.REGULARIZE_PROTOTYPES``.
    """

    loss_name = "prototype_matching"

    def __init__(
        self,
        num_prototypes: int,
        embed_dim: int,
        temperature: float,
        sharpen_temperature: float,
        sinkhorn_iterations: int,
        label_smoothing: float,
        anchor_entropy_weight: float,
    ) -> None:
        super().__init__()
        name = self.loss_name
        self.num_prototypes = check_number(num_prototypes, "num_prototypes", name, minimum=2, integer=True)
        self.embed_dim = check_number(embed_dim, "embed_dim", name, minimum=1, integer=True)
        self.temperature = check_number(temperature, "temperature", name, minimum=0, strict_min=True)
        self.sharpen_temperature = check_number(
            sharpen_temperature, "sharpen_temperature", name, minimum=0, strict_min=True
        )
        self.sinkhorn_iterations = check_number(sinkhorn_iterations, "sinkhorn_iterations", name, minimum=0, integer=True)
        self.label_smoothing = check_number(label_smoothing, "label_smoothing", name, minimum=0, maximum=1, strict_max=True)
        self.anchor_entropy_weight = check_number(anchor_entropy_weight, "anchor_entropy_weight", name, minimum=0)
        bound = 1.0 / math.sqrt(self.embed_dim)
        self.prototypes = nn.Parameter(torch.empty(self.num_prototypes, self.embed_dim).uniform_(-bound, bound))
        self.last_mean_probs: Optional[torch.Tensor] = None

    # ------------------------------------------------------------- subclasses
    def regularizer(self, mean_probs: torch.Tensor) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
        """Return (named terms to log, weighted regularization to add to the loss)."""
        raise NotImplementedError

    def sinkhorn_marginals(self) -> Optional[torch.Tensor]:
        """Prototype marginals of the Sinkhorn targets (None: uniform 1/K)."""
        return None

    # ------------------------------------------------------------------ parts
    def log_predictions(self, embeddings: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
        """log p for ``(n, D)`` embeddings (``functional.prototype_log_probs`` with this loss's settings)."""
        return functional.prototype_log_probs(embeddings, prototypes, self.temperature, self.label_smoothing)

    @torch.no_grad()
    def targets(self, target_embeddings: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
        """Sharpened, Sinkhorn-balanced targets (``functional.msn_targets`` with this loss's settings)."""
        return functional.msn_targets(
            target_embeddings, prototypes, self.temperature, self.sharpen_temperature, self.sinkhorn_iterations,
            self.label_smoothing, self.sinkhorn_marginals(),
        )

    def _checked_views(self, output):
        anchors = student_views(output, self.loss_name)
        targets = teacher_views(output, self.loss_name)
        if len(targets) != 1:
            raise ValueError(
                f"{self.loss_name} matches every anchor view to ONE target view, got {len(targets)} teacher views; "
                f"set MODEL.TEACHER_VIEWS to the target view only (e.g. [0])"
            )
        check_embeddings(anchors + targets, self.loss_name, "student/teacher")
        if anchors[0].shape[1] != self.embed_dim:
            raise ValueError(
                f"{self.loss_name}: embeddings have dimension {anchors[0].shape[1]} but the prototypes have "
                f"embed_dim={self.embed_dim}; set LOSS.PARAMS.embed_dim to the last head's output width"
            )
        return anchors, targets[0]

    # ---------------------------------------------------------------- forward
    def forward(self, output, batch=None) -> Dict[str, torch.Tensor]:
        anchors, target = self._checked_views(output)
        with autocast_off(target):
            anchors = torch.cat([full_precision(a) for a in anchors])
            target = full_precision(target).detach()
            prototypes = self.prototypes.to(anchors.dtype)

            log_probs = self.log_predictions(anchors, prototypes)
            targets = self.targets(target, prototypes.detach())
            ce = functional.prototype_cross_entropy(log_probs, targets)
            mean_probs = functional.mean_prediction(log_probs.exp())
            reg_terms, reg_loss = self.regularizer(mean_probs)
            loss = ce + reg_loss
            terms = {"ce": ce, **reg_terms}
            if self.anchor_entropy_weight > 0:
                anchor_entropy = functional.mean_entropy(log_probs)
                loss = loss + self.anchor_entropy_weight * anchor_entropy
                terms["anchor_entropy"] = anchor_entropy

        self.last_mean_probs = mean_probs.detach()
        return {"loss": loss, **terms, "entropy_pbar": functional.entropy(self.last_mean_probs)}
