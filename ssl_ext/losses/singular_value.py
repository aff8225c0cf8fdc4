"""MSBReg's singular value loss (the global dispersive force).

Moon, Buracas, Park, Kim, Canny, "An Embedding-Dynamic Approach to Self-supervised
Learning", arXiv:2207.03552.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Dict, Iterator

import torch
import torch.nn.functional as F

from registry import register_loss
from ssl_ext.losses._views import autocast_off, check_embeddings, full_precision, student_views
from ssl_ext.losses.base import SSLLoss
from ssl_ext.utils.distributed import all_gather_with_grad


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
            loss = sum(self.negative_nuclear_norm(full_precision(v)) for v in views) / len(views)
        return {"loss": loss}

    def negative_nuclear_norm(self, local_embeddings: torch.Tensor) -> torch.Tensor:
        z = local_embeddings
        if self.normalize:
            z = F.normalize(z, dim=1)
        z = all_gather_with_grad(z)
        if self.center:
            z = z - z.mean(dim=0, keepdim=True)
        with _single_threaded_on_cpu(z):
            singular_values = torch.linalg.svdvals(z)
        return -singular_values.sum()


@contextmanager
def _single_threaded_on_cpu(tensor: torch.Tensor) -> Iterator[None]:
    """Run the enclosed CPU LAPACK call on one thread, restoring the thread count after.

    The SVD of a ``(N, D)`` batch bidiagonalizes it in ~D small steps, each ending in
    a thread barrier. When the cores are shared (other processes, several DDP ranks
    on one node) every barrier waits for a scheduler tick: on 2 busy cores a
    1024 x 256 SVD took ~4 s with 2 threads and ~30 ms with 1
    (benchmarks/loss_speed.py). On idle cores a second thread could at best halve
    those ~30 ms, which is small next to a training step; the singular values agree
    to rounding (float32: within an ulp; float64: ~1e-13).
    """
    threads = torch.get_num_threads()
    if tensor.device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
