"""data2vec (vision): regress the EMA teacher's contextualized representations of masked patches.

Baevski, Hsu, Xu, Babu, Gu, Auli, "data2vec: A General Framework for Self-supervised
Learning in Speech, Vision and Language", ICML 2022, arXiv:2202.03555.

>>> import torch
>>> blocks = torch.tensor([[[[1.0], [3.0]]]])  # N=1, K=1 block, 2 tokens, D=1
>>> data2vec_targets(blocks, block_norm="instance", eps=0.0)  # each channel standardized over the tokens
tensor([[[-1.],
         [ 1.]]])
>>> prediction, target = torch.zeros(1, 2, 1), torch.tensor([[[3.0], [0.0]]])
>>> masked_regression_loss(prediction, target, torch.tensor([[True, False]]), beta=2.0, scale=1.0)  # |3| > beta: 3 - 1
tensor(2.)
"""
from __future__ import annotations

import math
from typing import Dict, Optional

import torch
import torch.nn.functional as F

from registry import register_loss
from ssl_ext.losses._views import autocast_off, check_number, full_precision, student_views, teacher_views, view_ids
from ssl_ext.losses.base import SSLLoss
from ssl_ext.utils.distributed import all_reduce_sum, all_reduce_sum_with_grad

NORMS = ("instance", "layer", "none")


def _normalize(x: torch.Tensor, kind: str, token_dim: int, eps: float) -> torch.Tensor:
    if kind == "instance":  # per sample and channel, over the tokens (F.instance_norm without affine)
        mean = x.mean(dim=token_dim, keepdim=True)
        var = x.var(dim=token_dim, unbiased=False, keepdim=True)
        return (x - mean) / (var + eps).sqrt()
    if kind == "layer":  # per token, over the channels (parameter-free layer norm)
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, unbiased=False, keepdim=True)
        return (x - mean) / (var + eps).sqrt()
    return x


@torch.no_grad()
def data2vec_targets(
    block_outputs: torch.Tensor, block_norm: str = "instance", target_norm: str = "none", eps: float = 1e-5
) -> torch.Tensor:
    """Targets ``(N, L, D)`` from the teacher's top-K block outputs ``(N, K, L, D)``.

    Each block's output is normalized (``instance``: every channel over the tokens of its
    sample, the paper's choice; ``layer``: every token over its channels; ``none``), the K
    blocks are averaged, and the average is optionally normalized again (``target_norm``).
    """
    if block_outputs.dim() != 4:
        raise ValueError(f"data2vec_targets: expected (N, K, L, D) block outputs, got shape {tuple(block_outputs.shape)}")
    normalized = _normalize(block_outputs.detach(), block_norm, token_dim=2, eps=eps)
    return _normalize(normalized.mean(dim=1), target_norm, token_dim=1, eps=eps)


def masked_regression_loss(
    prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, beta: float, scale: float
) -> torch.Tensor:
    """``scale · Σ_d ℓ(pred − target)`` per masked token, averaged over the masked tokens of the global batch.

    ``ℓ`` is smooth-L1 with threshold ``beta`` (the paper's loss), or the squared error when ``beta == 0``.
    """
    if beta == 0:
        per_token = F.mse_loss(prediction, target, reduction="none").sum(dim=-1)
    else:
        per_token = F.smooth_l1_loss(prediction, target, reduction="none", beta=beta).sum(dim=-1)
    weights = mask.to(per_token.dtype)
    count = all_reduce_sum(weights.sum().detach())
    if float(count) == 0:
        raise ValueError("masked_regression_loss: no masked token in the batch; set the trunk's patch_drop > 0")
    return scale * all_reduce_sum_with_grad((per_token * weights).sum()) / count


@register_loss("data2vec_loss")
class Data2VecLoss(SSLLoss):
    """The student, shown a masked view, regresses the teacher's targets for the masked patches.

    Model set-up (see ``configs_yaml/pretrain/data2vec``): the ``vit`` trunk with
    ``mask_style: token`` (hidden patches replaced by a learned mask token), ``output:
    tokens`` and ``teacher_target_blocks: K``; no shared head; a linear regression head as
    ``STUDENT_ONLY_HEADS``; the EMA teacher enabled, its momentum annealed linearly
    (``MODEL.EMA_TEACHER``, the paper's τ0 -> τe). Student and teacher see the *same*
    view: the teacher unmasked.

    * targets ``= data2vec_targets(teacher block outputs)``: instance-normalized average
      of the top-K blocks (patch tokens only);
    * ``loss = masked_regression_loss(student patch predictions, targets, patch_mask)``
      with smooth-L1 (``beta``) or L2 (``beta = 0``), scaled by ``1/sqrt(D)`` by default
      as in fairseq's data2vec.

    Args:
        beta: smooth-L1 threshold, 0 for the squared error (2.0 as in data2vec's vision config).
        loss_scale: multiplier of the per-token loss (None: 1/sqrt(D)).
        block_norm: normalization of each block output: instance | layer | none (instance).
        target_norm: normalization of the averaged target: instance | layer | none (none).
    """

    loss_name = "data2vec_loss"

    def __init__(
        self, beta: float = 2.0, loss_scale: Optional[float] = None, block_norm: str = "instance",
        target_norm: str = "none",
    ) -> None:
        super().__init__()
        name = self.loss_name
        self.beta = check_number(beta, "beta", name, minimum=0)
        self.loss_scale = None if loss_scale is None else check_number(loss_scale, "loss_scale", name, minimum=0,
                                                                       strict_min=True)
        for key, value in (("block_norm", block_norm), ("target_norm", target_norm)):
            if value not in NORMS:
                raise ValueError(f"{name}: {key} must be one of {list(NORMS)}, got {value!r}")
        self.block_norm, self.target_norm = block_norm, target_norm

    def forward(self, output, batch=None) -> Dict[str, torch.Tensor]:
        predictions = student_views(output, self.loss_name)
        teachers = teacher_views(output, self.loss_name)
        students_ids, teacher_ids = view_ids(output)
        if students_ids != teacher_ids:
            raise ValueError(
                f"{self.loss_name}: student and teacher must see the same views (the teacher unmasked), got student "
                f"views {students_ids} and teacher views {teacher_ids}; set MODEL.STUDENT_VIEWS = MODEL.TEACHER_VIEWS"
            )
        masks = output.extras.get("student_patch_mask")
        if masks is None or len(masks) != len(predictions) or any(m is None for m in masks):
            raise ValueError(
                f"{self.loss_name}: the model output carries no patch mask; use the vit trunk with mask_style: token "
                f"and patch_drop > 0"
            )
        total = 0.0
        with autocast_off(predictions[0]):
            for prediction, blocks, mask in zip(predictions, teachers, masks):
                if blocks.dim() != 4:
                    raise ValueError(
                        f"{self.loss_name}: teacher output must be (N, K, patches, D) block outputs, got "
                        f"{tuple(blocks.shape)}; set the vit trunk's teacher_target_blocks: K and MODEL.HEADS: []"
                    )
                target = data2vec_targets(full_precision(blocks), self.block_norm, self.target_norm)
                prediction = full_precision(prediction)
                if prediction.dim() == 3 and prediction.shape[1] == target.shape[1] + 1:
                    prediction = prediction[:, 1:]  # drop the class token
                if prediction.shape != target.shape or mask.shape != target.shape[:2]:
                    raise ValueError(
                        f"{self.loss_name}: student predictions {tuple(prediction.shape)} and mask {tuple(mask.shape)} "
                        f"do not match targets {tuple(target.shape)}; use output: tokens and a regression head of width D"
                    )
                scale = self.loss_scale if self.loss_scale is not None else 1.0 / math.sqrt(target.shape[-1])
                total = total + masked_regression_loss(prediction, target.to(prediction.dtype), mask, self.beta, scale)
        return {"loss": total / len(predictions)}
