"""MSBReg's Brownian diffusive loss (the local dispersive force).

Moon, Buracas, Park, Kim, Canny, "An Embedding-Dynamic Approach to Self-supervised
Learning", arXiv:2207.03552.
"""
from __future__ import annotations

from typing import Dict

import torch

from registry import register_loss
from ssl_ext.losses._views import autocast_off, check_embeddings, check_number, full_precision, student_views
from ssl_ext.losses.base import SSLLoss
from ssl_ext.losses.functional import brownian_diffusive, brownian_noise


@register_loss("brownian_diffusive_loss")
class BrownianDiffusiveLoss(SSLLoss):
    """``mean_i ⟨ẑ_i, ε_i⟩`` with a fresh Gaussian direction ``ε_i`` per sample and step.

    Its gradient w.r.t. ``ẑ_i`` is ``ε_i / N``: a random kick with zero mean that needs
    no other sample's coordinates (Brownian motion of the particles). The loss value
    itself is noise around zero; only its gradient matters.

    Choices the paper leaves open, as parameters:

    * ``noise_std``: scale of ``ε``. With ``scale_by_dim`` (default) ``ε ~ N(0, noise_std²/D · I)``,
      so ``‖ε‖ ≈ noise_std`` whatever the embedding width ``D`` and the kick is
      comparable to the unit sphere the normalized embeddings live on.
    * ``normalize`` (default true): ``ẑ`` is the L2-normalized embedding, so the kick
      is projected onto the sphere's tangent plane (a random walk on the sphere, the
      space the other MSBReg terms measure); false kicks the raw embedding.

    The noise comes from torch's default generator on the embedding's device, so
    seeded runs (and exact resume, which restores RNG states) reproduce it. With
    several student views each view gets its own noise and the loss is their mean.

    Without the trainer (the maths is ``ssl_ext.losses.functional.brownian_noise`` and
    ``brownian_diffusive``); the gradient w.r.t. the raw embeddings is the kick:

    >>> import torch
    >>> z = torch.zeros(3, 4, requires_grad=True)
    >>> _ = torch.manual_seed(0)
    >>> BrownianDiffusiveLoss(normalize=False).forward_tensors(student=[z])["loss"].backward()
    >>> _ = torch.manual_seed(0)
    >>> torch.allclose(z.grad, torch.randn(3, 4) * (1.0 / 4 ** 0.5) / 3)  # ε ~ N(0, 1/D), over N = 3 rows
    True
    """

    def __init__(self, noise_std: float = 1.0, scale_by_dim: bool = True, normalize: bool = True) -> None:
        super().__init__()
        self.noise_std = check_number(noise_std, "noise_std", "brownian_diffusive_loss", minimum=0)
        for key, value in (("scale_by_dim", scale_by_dim), ("normalize", normalize)):
            if not isinstance(value, bool):
                raise ValueError(f"brownian_diffusive_loss: {key} must be true or false, got {value!r}")
        self.scale_by_dim, self.normalize = scale_by_dim, normalize

    def forward(self, output, batch=None) -> Dict[str, torch.Tensor]:
        views = student_views(output, "brownian_diffusive_loss")
        check_embeddings(views, "brownian_diffusive_loss")
        with autocast_off(views[0]):
            total = 0
            for view in views:
                z = full_precision(view)
                noise = brownian_noise(z, self.noise_std, self.scale_by_dim)
                total = total + brownian_diffusive(z, noise, self.normalize)
            loss = total / len(views)
        return {"loss": loss}
