"""MSBReg's Brownian diffusive loss (the local dispersive force).

Moon, Buracas, Park, Kim, Canny, "An Embedding-Dynamic Approach to Self-supervised
Learning", arXiv:2207.03552.
"""
from __future__ import annotations

import math
from typing import Dict

import torch
import torch.nn.functional as F

from registry import register_loss
from ssl_ext.losses._views import autocast_off, check_embeddings, check_number, full_precision, student_views
from ssl_ext.losses.base import SSLLoss
from ssl_ext.utils.distributed import all_reduce_mean_with_grad


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
    """

    def __init__(self, noise_std: float = 1.0, scale_by_dim: bool = True, normalize: bool = True) -> None:
        super().__init__()
        self.noise_std = check_number(noise_std, "noise_std", "brownian_diffusive_loss", minimum=0)
        for key, value in (("scale_by_dim", scale_by_dim), ("normalize", normalize)):
            if not isinstance(value, bool):
                raise ValueError(f"brownian_diffusive_loss: {key} must be true or false, got {value!r}")
        self.scale_by_dim, self.normalize = scale_by_dim, normalize

    def noise_like(self, z: torch.Tensor) -> torch.Tensor:
        std = self.noise_std / math.sqrt(z.shape[1]) if self.scale_by_dim else self.noise_std
        return torch.randn(z.shape, dtype=z.dtype, device=z.device) * std

    def forward(self, output, batch=None) -> Dict[str, torch.Tensor]:
        views = student_views(output, "brownian_diffusive_loss")
        check_embeddings(views, "brownian_diffusive_loss")
        with autocast_off(views[0]):
            total = 0
            for view in views:
                z = full_precision(view)
                if self.normalize:
                    z = F.normalize(z, dim=1)
                total = total + (z * self.noise_like(z)).sum(dim=1).mean()
            loss = all_reduce_mean_with_grad(total / len(views))
        return {"loss": loss}
