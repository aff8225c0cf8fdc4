"""SwAV: swapped prediction of Sinkhorn-balanced prototype codes across multi-crop views.

Caron, Misra, Mairal, Goyal, Bojanowski, Joulin, "Unsupervised Learning of Visual
Features by Contrasting Cluster Assignments", NeurIPS 2020, arXiv:2006.09882.

The maths is in three functions on plain tensors (usable outside ssl_ext); the
registered ``swav_loss`` adds the learnable prototypes, the feature queue and the
prototype freezing of the paper.

>>> import torch
>>> scores = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
>>> swav_codes(scores, epsilon=0.05, iterations=3)  # already balanced: codes sharpen per row
tensor([[1.0000e+00, 2.0612e-09],
        [2.0612e-09, 1.0000e+00]], dtype=torch.float64)
>>> codes = swav_codes(scores, epsilon=0.05, iterations=3)
>>> float(swapped_prediction_loss([scores, scores], [codes, codes], [0, 1], temperature=1.0))  # doctest: +ELLIPSIS
0.3132...
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from registry import register_loss
from ssl_ext.losses._views import autocast_off, check_embeddings, check_number, full_precision, student_views
from ssl_ext.losses.base import SSLLoss
from ssl_ext.losses.sinkhorn import sinkhorn_knopp
from ssl_ext.utils.distributed import (
    all_gather_no_grad, all_reduce_mean_with_grad, all_reduce_sum, get_rank, get_world_size, is_distributed,
)


@torch.no_grad()
def _global_max(tensor: torch.Tensor) -> torch.Tensor:
    top = tensor.max().clone()
    if is_distributed() and get_world_size() > 1:
        dist.all_reduce(top, op=dist.ReduceOp.MAX)
    return top


@torch.no_grad()
def swav_codes(
    scores: torch.Tensor, epsilon: float, iterations: int, prototype_marginals: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """SwAV's codes ``Q`` for local scores ``(n, K)`` (cosine similarities to the prototypes).

    ``Q = Sinkhorn(exp(scores / epsilon))`` over the *global* batch: prototype ``k``
    receives total mass ``prototype_marginals[k]`` (uniform ``1/K`` by default: the
    equipartition constraint of the paper, which is a uniform cluster prior) and every
    sample mass ``1/N``; rows are returned summing to 1. The scores are shifted by
    their global maximum first, which cancels in Sinkhorn's first normalization and
    keeps ``exp`` finite for any ``epsilon``. No gradient flows through the codes.
    """
    if scores.dim() != 2:
        raise ValueError(f"swav_codes: scores must be (n, K), got shape {tuple(scores.shape)}")
    if not epsilon > 0:
        raise ValueError(f"swav_codes: epsilon must be > 0, got {epsilon!r}")
    shifted = scores.detach() - _global_max(scores.detach())
    return sinkhorn_knopp(torch.exp(shifted / epsilon), iterations, prototype_marginals)


def swapped_prediction_loss(
    scores: Sequence[torch.Tensor], codes: Sequence[torch.Tensor], code_views: Sequence[int], temperature: float
) -> torch.Tensor:
    """Mean over code views ``i`` of ``Σ_{v≠i} H(codes_i, softmax(scores_v / temperature)) / (V − 1)``.

    ``scores``: one ``(n, K)`` tensor per view (all V views, large and small crops);
    ``codes``: the codes of the views listed in ``code_views`` (positions in ``scores``);
    ``H`` is the cross-entropy averaged over the ``n`` rows. This is the paper's
    swapped-prediction objective (eq. 1 summed over the multi-crop pairs, with SwAV's
    and lightly's normalization by ``V − 1`` and by the number of code views).
    """
    if len(codes) != len(code_views) or not code_views:
        raise ValueError(f"swapped_prediction_loss: need one code tensor per code view, got {len(codes)} for {list(code_views)}")
    if len(scores) < 2:
        raise ValueError(f"swapped_prediction_loss: needs at least 2 views, got {len(scores)}")
    log_probs = [F.log_softmax(s / temperature, dim=1) for s in scores]
    total = 0.0
    for code, i in zip(codes, code_views):
        # Σ_{v≠i} of the cross-entropies: sum the other views' log-probabilities first (one product instead of V−1).
        others = sum(log_probs[v] for v in range(len(scores)) if v != i)
        total = total - (code * others).sum(dim=1).mean() / (len(scores) - 1)
    return total / len(code_views)


def mean_assignment(scores: Sequence[torch.Tensor], temperature: float) -> torch.Tensor:
    """p̄: the mean of ``softmax(scores / temperature)`` over every row of every view of the global batch (detached)."""
    with torch.no_grad():
        total = sum(torch.softmax(s.detach() / temperature, dim=1).sum(dim=0) for s in scores)
        rows = sum(s.shape[0] for s in scores) * get_world_size()
        return all_reduce_sum(total) / rows


@register_loss("swav_loss")
class SwAVLoss(SSLLoss):
    """SwAV's loss on the student's multi-crop embeddings, with learnable prototypes.

    Views: the student gives V ≥ 2 views (SwAV: 2 large crops then 6 small ones); the
    views at positions ``code_views`` (default the two large crops, SwAV's
    ``crops_for_assign``) get codes, every other view predicts them. No teacher.

    * scores ``= normalize(z) · normalize(prototypes)ᵀ``. SwAV renormalizes the
      prototype weights in place after each step; here the normalization is part of the
      forward pass, which gives the same scores and a gradient tangent to the sphere;
    * codes ``= swav_codes(scores)`` over the global batch (3 Sinkhorn iterations,
      ``epsilon`` 0.05), optionally with a queue of earlier embeddings appended;
    * ``loss = swapped_prediction_loss(...)``, averaged over the global batch.

    State carried by checkpoints (registered buffers): the number of training forward
    passes ``steps`` (prototypes get no update while ``steps < freeze_prototypes_steps``,
    as SwAV freezes them for its first iterations) and the feature queue.

    Queue: from training step ``queue_start_step`` on, the embeddings of the code views
    of the *global* batch are pushed into a queue of ``queue_length`` rows (identical on
    every rank, so checkpoints written by rank 0 carry it whole). Once full, each rank
    appends its ``1/world_size`` share of the queue (scored with the current prototypes)
    to its rows before Sinkhorn, so the codes are balanced over global batch + queue,
    as SwAV's per-GPU queues are. ``queue_length`` must then be divisible by the world size.

    Args:
        num_prototypes: K (3000 for ImageNet).
        embed_dim: width of the head's output, the prototypes' width (128).
        temperature: softmax temperature of the predictions (0.1).
        epsilon: entropic regularization of the codes (0.05).
        sinkhorn_iterations: Sinkhorn-Knopp iterations (3).
        code_views: positions (in the student views) of the views that get codes ([0, 1]).
        queue_length: rows of the feature queue, 0 for none (SwAV: 3840 at batch 256).
        queue_start_step: training step from which the queue is filled (SwAV: epoch 15).
        freeze_prototypes_steps: training steps during which the prototypes are frozen (SwAV: 313).

    ``sinkhorn_marginals()`` is the hook the prior-matching variant (``pswav_loss``) overrides.
    """

    loss_name = "swav_loss"

    def __init__(
        self,
        num_prototypes: int = 3000,
        embed_dim: int = 128,
        temperature: float = 0.1,
        epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
        code_views: List[int] = (0, 1),
        queue_length: int = 0,
        queue_start_step: int = 0,
        freeze_prototypes_steps: int = 0,
    ) -> None:
        super().__init__()
        name = self.loss_name
        self.num_prototypes = check_number(num_prototypes, "num_prototypes", name, minimum=2, integer=True)
        self.embed_dim = check_number(embed_dim, "embed_dim", name, minimum=1, integer=True)
        self.temperature = check_number(temperature, "temperature", name, minimum=0, strict_min=True)
        self.epsilon = check_number(epsilon, "epsilon", name, minimum=0, strict_min=True)
        self.sinkhorn_iterations = check_number(sinkhorn_iterations, "sinkhorn_iterations", name, minimum=0, integer=True)
        if isinstance(code_views, (str, bytes)) or not hasattr(code_views, "__iter__"):
            raise ValueError(f"{name}: code_views must be a list of view positions, got {code_views!r}")
        self.code_views = [check_number(v, "code_views entry", name, minimum=0, integer=True) for v in code_views]
        if not self.code_views or len(set(self.code_views)) != len(self.code_views):
            raise ValueError(f"{name}: code_views must list distinct view positions, got {list(code_views)!r}")
        self.queue_length = check_number(queue_length, "queue_length", name, minimum=0, integer=True)
        self.queue_start_step = check_number(queue_start_step, "queue_start_step", name, minimum=0, integer=True)
        self.freeze_prototypes_steps = check_number(
            freeze_prototypes_steps, "freeze_prototypes_steps", name, minimum=0, integer=True
        )
        bound = self.embed_dim ** -0.5
        self.prototypes = nn.Parameter(torch.empty(self.num_prototypes, self.embed_dim).uniform_(-bound, bound))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("queue", torch.zeros(len(self.code_views), self.queue_length, self.embed_dim))
        self.register_buffer("queue_rows", torch.zeros((), dtype=torch.long))
        # The prior the codes impose, for the prior monitor hook (uniform: SwAV's equipartition).
        self.register_buffer(
            "prior", torch.full((self.num_prototypes,), 1.0 / self.num_prototypes, dtype=torch.float64), persistent=False
        )
        self.last_mean_probs: Optional[torch.Tensor] = None

    def log_predictions(self, embeddings: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
        """``log softmax(cos(embeddings, prototypes) / temperature)`` (N, K): the prediction of ``forward``, read
        by the offline prototype-usage analysis (ssl_ext/analysis/prototype_usage.py) as for MSN."""
        scores = F.normalize(embeddings, dim=1) @ F.normalize(prototypes, dim=1).T
        return F.log_softmax(scores / self.temperature, dim=1)

    def sinkhorn_marginals(self) -> Optional[torch.Tensor]:
        """Prototype marginals of the codes (None: uniform, SwAV's equipartition)."""
        return None

    def _checked_views(self, output) -> List[torch.Tensor]:
        views = student_views(output, self.loss_name, minimum=2)
        check_embeddings([views[0]], self.loss_name)
        for i, v in enumerate(views):
            if not isinstance(v, torch.Tensor) or v.dim() != 2 or v.shape[1] != self.embed_dim:
                shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
                raise ValueError(
                    f"{self.loss_name}: student view {i} must be (N, embed_dim={self.embed_dim}), got {shape}; "
                    f"set LOSS.PARAMS.embed_dim to the last head's output width"
                )
            if v.shape[0] != views[0].shape[0]:
                raise ValueError(f"{self.loss_name}: every view needs the same batch size, got {[t.shape[0] for t in views]}")
        if max(self.code_views) >= len(views):
            raise ValueError(
                f"{self.loss_name}: code_views {self.code_views} refer to views the student does not have "
                f"(it has {len(views)}); set LOSS.PARAMS.code_views to positions of its large crops"
            )
        return views

    def _queue_share(self) -> torch.Tensor:
        world, rank = get_world_size(), get_rank()
        if self.queue_length % world:
            raise ValueError(
                f"{self.loss_name}: queue_length={self.queue_length} is not divisible by the world size {world}; "
                f"choose a multiple of the number of processes"
            )
        share = self.queue_length // world
        return self.queue[:, rank * share : (rank + 1) * share]

    def forward(self, output, batch=None) -> Dict[str, torch.Tensor]:
        views = self._checked_views(output)
        training = self.training and torch.is_grad_enabled()
        with autocast_off(views[0]):
            embeddings = [F.normalize(full_precision(v), dim=1) for v in views]
            prototypes = self.prototypes.to(embeddings[0].dtype)
            if int(self.steps) < self.freeze_prototypes_steps:
                # Zero gradient instead of no gradient: DDP expects every parameter in the graph.
                prototypes = prototypes.detach() + 0.0 * prototypes
            weights = F.normalize(prototypes, dim=1)
            local_n = embeddings[0].shape[0]
            scores = list((torch.cat(embeddings) @ weights.T).split(local_n))
            use_queue = self.queue_length > 0 and int(self.queue_rows) >= self.queue_length
            queue = self._queue_share().to(weights.dtype) if use_queue else None
            codes = []
            for slot, i in enumerate(self.code_views):
                rows = scores[i].detach()
                if queue is not None:
                    rows = torch.cat([rows, queue[slot] @ weights.detach().T])
                codes.append(swav_codes(rows, self.epsilon, self.sinkhorn_iterations, self.sinkhorn_marginals())[:local_n])
            loss = all_reduce_mean_with_grad(swapped_prediction_loss(scores, codes, self.code_views, self.temperature))
            self.last_mean_probs = mean_assignment(scores, self.temperature)
        if training:
            self._advance(embeddings)
        entropy_pbar = -torch.special.xlogy(self.last_mean_probs, self.last_mean_probs).sum()
        return {"loss": loss, "entropy_pbar": entropy_pbar, "queue_used": torch.tensor(float(use_queue))}

    @torch.no_grad()
    def _advance(self, embeddings: List[torch.Tensor]) -> None:
        if self.queue_length > 0 and int(self.steps) >= self.queue_start_step:
            for slot, i in enumerate(self.code_views):
                newest = all_gather_no_grad(embeddings[i].detach()).to(self.queue.dtype)
                self.queue[slot] = torch.cat([newest, self.queue[slot]])[: self.queue_length]
            self.queue_rows.add_(embeddings[0].shape[0] * get_world_size()).clamp_(max=self.queue_length)
        self.steps.add_(1)
