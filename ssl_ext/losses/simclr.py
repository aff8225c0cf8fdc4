"""SimCLR's NT-Xent (normalized temperature-scaled cross-entropy) loss.

Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for Contrastive Learning of
Visual Representations", ICML 2020, arXiv:2002.05709.
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F

from registry import register_loss
from ssl_ext.losses.base import SSLLoss
from ssl_ext.losses._views import autocast_off, check_embeddings, check_number, full_precision, two_student_views
from ssl_ext.utils.distributed import all_gather_with_grad, all_reduce_mean_with_grad, get_rank


@register_loss("simclr_loss")
class SimCLRLoss(SSLLoss):
    """InfoNCE over two views with negatives from the *global* batch.

    Each of the ``2N`` embeddings of a global batch of ``N`` images is an anchor; its
    positive is the other view of the same image and its ``2N - 2`` negatives are all
    remaining embeddings of both views on every rank. Embeddings are L2-normalized,
    so logits are cosine similarities divided by ``temperature``. The loss is the
    mean cross-entropy over all ``2N`` anchors (symmetric in the two views).

    Distributed: a rank scores only its local anchors against the all-gathered
    candidates and the per-rank means are averaged with gradient, so every rank
    reports the global loss and DDP's gradient averaging reproduces the gradient of
    one process holding the whole batch.

    Args:
        temperature: softmax temperature tau > 0 (SimCLR: 0.1 for large batches,
            0.5 for small ones).
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.temperature = check_number(temperature, "temperature", "simclr_loss", minimum=0, strict_min=True)

    def forward(self, output, batch=None) -> Dict[str, torch.Tensor]:
        view_a, view_b = two_student_views(output, "simclr_loss")
        with autocast_off(view_a):
            return {"loss": nt_xent(full_precision(view_a), full_precision(view_b), self.temperature)}


def nt_xent(view_a: torch.Tensor, view_b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Global-batch NT-Xent between paired local embeddings ``(n, D)`` of two views."""
    check_embeddings([view_a, view_b], "simclr_loss")
    local_n = view_a.shape[0]
    anchors = F.normalize(torch.cat([view_a, view_b]), dim=1)
    global_a = all_gather_with_grad(anchors[:local_n])
    global_b = all_gather_with_grad(anchors[local_n:])
    global_n = global_a.shape[0]
    candidates = torch.cat([global_a, global_b])

    logits = anchors @ candidates.T / temperature
    offset = get_rank() * local_n
    rows = torch.arange(2 * local_n, device=anchors.device)
    sample = offset + rows % local_n
    is_view_b = rows >= local_n
    self_column = sample + is_view_b * global_n
    positive_column = sample + (~is_view_b) * global_n
    logits = logits.index_put((rows, self_column), torch.tensor(float("-inf"), dtype=logits.dtype, device=logits.device))
    local_loss = F.cross_entropy(logits, positive_column)
    return all_reduce_mean_with_grad(local_loss)
