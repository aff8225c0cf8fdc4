"""Prior-matching MSN (PMSN): MSN with its hidden uniform cluster prior replaced by any prior.

Assran, Balestriero, Duval, Bordes, Misra, Bojanowski, Vincent, Rabbat, Ballas, "The
Hidden Uniform Cluster Prior in Self-Supervised Learning", ICLR 2023, arXiv:2210.07277.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

import torch

from registry import register_loss
from ssl_ext.losses import functional
from ssl_ext.losses._prototype_matching import PrototypeMatchingLoss
from ssl_ext.losses._views import check_number
from ssl_ext.losses.priors import build_checked_prior

DEFAULT_PRIOR = {"NAME": "power_law", "PARAMS": {"tau": 0.25}}


@register_loss("pmsn_loss")
class PMSNLoss(PrototypeMatchingLoss):
    """MSN's loss with me-max replaced by ``regularization_weight * KL(p̄ ‖ π)``.

    ``KL(p̄ ‖ π) = Σ_k p̄_k (log p̄_k − log π_k)`` with π from the ``priors`` registry
    (``uniform``, ``power_law`` with π_k ∝ k^(−tau), ``from_file``, or a user's
    ``@register_prior``), built for ``num_prototypes`` and sorted descending: prototype
    k is the one asked to hold mass π_k. With the uniform prior this is MSN's me-max
    term, so the loss equals MSN's to floating-point precision.

    ``sinkhorn_prior``: the Sinkhorn targets keep MSN's uniform prototype marginals by
    default, because the paper changes only the regularizer and the prior is then
    imposed solely through KL(p̄ ‖ π). Setting it true gives prototype k the target
    mass π_k instead, so targets and regularizer agree on the cluster sizes (a
    stronger push toward π; an option to study, not the paper's setting).

    Args: those of ``msn_loss`` (same names, so an MSN config switches to PMSN by
    changing NAME and adding a prior), with ``regularization_weight`` now the lambda of
    the KL term, plus
        prior: ``{NAME, PARAMS}`` of a registered prior (default power_law, tau 0.25).
        sinkhorn_prior: Sinkhorn with the prior's marginals (false).

    Not lightly's regularizer: lightly 1.6's ``PMSNLoss`` computes
    ``F.kl_div(p̄.log(), π, reduction="sum")`` = KL(π ‖ p̄), the reverse direction. We keep
    the paper's KL(p̄ ‖ π), which is MSN's me-max at the uniform π (so PMSN = MSN there);
    the two directions agree only where p̄ = π. With the KL direction flipped, this loss
    equals lightly's to float64 rounding (``tests/losses/test_lightly_agreement.py``).

    Without the trainer (the maths is ``ssl_ext.losses.functional``, ``prior_kl`` for the
    regularizer):

    >>> import torch
    >>> loss = PMSNLoss(num_prototypes=2, embed_dim=2, temperature=1.0,
    ...                 prior={"NAME": "power_law", "PARAMS": {"tau": 1.0}})  # π = (2/3, 1/3)
    >>> with torch.no_grad():
    ...     _ = loss.prototypes.copy_(torch.eye(2))
    >>> terms = loss.forward_tensors(student=[torch.eye(2)], teacher=[torch.eye(2)])
    >>> {name: round(value.item(), 4) for name, value in terms.items()}  # KL((½, ½) ‖ (⅔, ⅓)) = 0.0589
    {'loss': 0.3901, 'ce': 0.3312, 'kl_prior': 0.0589, 'entropy_pbar': 0.6931}
    """

    loss_name = "pmsn_loss"

    def __init__(
        self,
        num_prototypes: int = 1024,
        embed_dim: int = 256,
        temperature: float = 0.1,
        sharpen_temperature: float = 0.25,
        sinkhorn_iterations: int = 3,
        prior: Optional[Mapping[str, Any]] = None,
        regularization_weight: float = 1.0,
        sinkhorn_prior: bool = False,
        label_smoothing: float = 0.0,
        anchor_entropy_weight: float = 0.0,
    ) -> None:
        super().__init__(
            num_prototypes, embed_dim, temperature, sharpen_temperature, sinkhorn_iterations,
            label_smoothing, anchor_entropy_weight,
        )
        self.regularization_weight = check_number(regularization_weight, "regularization_weight", self.loss_name, minimum=0)
        if not isinstance(sinkhorn_prior, bool):
            raise ValueError(f"{self.loss_name}: sinkhorn_prior must be true or false, got {sinkhorn_prior!r}")
        self.sinkhorn_prior = sinkhorn_prior
        self.prior_spec = dict(DEFAULT_PRIOR if prior is None else prior)
        self.register_buffer("prior", build_checked_prior(self.prior_spec, self.num_prototypes), persistent=False)

    def sinkhorn_marginals(self) -> Optional[torch.Tensor]:
        return self.prior if self.sinkhorn_prior else None

    def regularizer(self, mean_probs: torch.Tensor) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
        kl_prior = functional.prior_kl(mean_probs, self.prior)
        return {"kl_prior": kl_prior}, self.regularization_weight * kl_prior
