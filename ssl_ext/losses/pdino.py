"""Prior-matching DINO: DINO with its implicit uniform cluster prior replaced by any prior.

DINO (Caron et al., arXiv:2104.14294) avoids collapse by centering the teacher's
outputs, which pushes every output dimension ("prototype") toward the same average
mass: a hidden uniform cluster prior, as in MSN and SwAV (Assran et al., "The Hidden
Uniform Cluster Prior in Self-Supervised Learning", ICLR 2023, arXiv:2210.07277).
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

import torch

from registry import register_loss
from ssl_ext.losses.dino import DINOLoss
from ssl_ext.losses.priors import build_checked_prior

DEFAULT_PRIOR = {"NAME": "power_law", "PARAMS": {"tau": 0.25}}


@register_loss("pdino_loss")
class PriorDINOLoss(DINOLoss):
    """DINO plus ``regularization_weight · KL(p̄ ‖ π)`` on the student's mean prediction p̄.

    ``KL(p̄ ‖ π) = Σ_k p̄_k (log p̄_k − log π_k)``, with p̄ the mean of the student's
    ``softmax(s / τ_s)`` over every view and row of the global batch and π from the
    ``priors`` registry (sorted descending: output k is asked to hold mass π_k), as
    PMSN does for MSN.

    Centering: kept, because DINO needs it against the collapse onto one dimension;
    but centering alone drives every dimension toward the same mean mass, i.e. toward
    the uniform prior that the KL term is there to replace. With ``prior_centering``
    (default) the centered teacher logits are therefore tilted by ``log π``:
    ``softmax((t − c) / τ_t + log π)``, so a teacher whose centered logits carry no
    information predicts π rather than uniform. With the uniform prior both the tilt (a
    constant) and the KL term (me-max) reduce exactly: ``pdino_loss`` equals
    ``dino_loss`` with the same ``regularization_weight`` (me-max weight) to
    floating-point precision, and plain DINO when that weight is 0.

    Args: those of ``dino_loss`` (``regularization_weight`` is now λ of the KL term,
    default 1.0), plus
        prior: ``{NAME, PARAMS}`` of a registered prior (default power_law, tau 0.25).
        prior_centering: tilt the centered teacher targets by log π (true).
    """

    loss_name = "pdino_loss"

    def __init__(
        self,
        out_dim: int = 65536,
        student_temperature: float = 0.1,
        teacher_temperature: float = 0.04,
        warmup_teacher_temperature: Optional[float] = None,
        warmup_teacher_temperature_steps: int = 0,
        center_momentum: float = 0.9,
        regularization_weight: float = 1.0,
        prior: Optional[Mapping[str, Any]] = None,
        prior_centering: bool = True,
    ) -> None:
        super().__init__(
            out_dim, student_temperature, teacher_temperature, warmup_teacher_temperature,
            warmup_teacher_temperature_steps, center_momentum, regularization_weight,
        )
        if not isinstance(prior_centering, bool):
            raise ValueError(f"{self.loss_name}: prior_centering must be true or false, got {prior_centering!r}")
        self.prior_centering = prior_centering
        self.prior_spec = dict(DEFAULT_PRIOR if prior is None else prior)
        self.register_buffer("prior", build_checked_prior(self.prior_spec, self.out_dim), persistent=False)

    def target_log_prior(self) -> Optional[torch.Tensor]:
        return self.prior.log() if self.prior_centering else None

    def regularizer(self, mean_probs: torch.Tensor) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
        log_prior = self.prior.to(mean_probs.dtype).log()
        kl_prior = (torch.special.xlogy(mean_probs, mean_probs) - mean_probs * log_prior).sum()
        return {"kl_prior": kl_prior}, self.regularization_weight * kl_prior
