"""SimCLR's NT-Xent (normalized temperature-scaled cross-entropy) loss.

Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for Contrastive Learning of
Visual Representations", ICML 2020, arXiv:2002.05709.
"""
from __future__ import annotations

from typing import Dict

import torch

from registry import register_loss
from ssl_ext.losses.base import SSLLoss
from ssl_ext.losses._views import autocast_off, check_embeddings, check_number, full_precision, two_student_views
from ssl_ext.losses.functional import nt_xent


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

    Without the trainer (the maths is ``ssl_ext.losses.functional.nt_xent``):

    >>> import torch
    >>> view_a = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    >>> view_b = torch.tensor([[5.0, 0.0], [0.0, 0.5]])
    >>> terms = SimCLRLoss(temperature=1.0).forward_tensors(student=[view_a, view_b])
    >>> round(terms["loss"].item(), 4)  # log(1 + 2/e): positive cos 1, both negatives cos 0
    0.5514
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.temperature = check_number(temperature, "temperature", "simclr_loss", minimum=0, strict_min=True)

    def forward(self, output, batch=None) -> Dict[str, torch.Tensor]:
        view_a, view_b = two_student_views(output, "simclr_loss")
        check_embeddings([view_a, view_b], "simclr_loss")
        with autocast_off(view_a):
            return {"loss": nt_xent(full_precision(view_a), full_precision(view_b), self.temperature)}

