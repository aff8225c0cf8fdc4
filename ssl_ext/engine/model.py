"""The trained model: a trunk, its heads, student-only heads, and an optional EMA teacher."""
from __future__ import annotations

import copy
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn


class ViewOutputs(list):
    """The per-view outputs of ``SSLModel.forward`` (a plain list to every caller), plus
    ``extras``: what the trunk reported beside its features, as ``{key: [one value per view]}``
    (e.g. the ViT's ``patch_mask`` of masked image modelling). ``ModelOutput`` picks them up."""

    def __init__(self, outputs=(), extras: Optional[Dict[str, list]] = None):
        super().__init__(outputs)
        self.extras: Dict[str, list] = extras or {}


class SSLModel(nn.Module):
    """Trunk followed by ``heads`` (shared with the teacher) and ``student_heads`` (student only).

    ``forward(views, mask=False)`` returns one output per view. Views of equal
    shape go through the network together (multi-crop: one pass per resolution),
    which keeps BatchNorm statistics per resolution group as in DINO/MSN.

    A trunk with ``forward_with_extras(x, mask) -> (features, extras)`` (the ViT) also
    reports per-sample tensors such as its patch mask; they are split per view into
    ``ViewOutputs.extras``, and a head whose ``uses_trunk_extras`` is true is called as
    ``head(features, extras)`` (MAE's decoder needs to know which patches were visible).
    """

    def __init__(self, trunk: nn.Module, heads: Sequence[nn.Module] = (), student_heads: Sequence[nn.Module] = ()):
        super().__init__()
        self.trunk = trunk
        self.heads = nn.ModuleList(heads)
        self.student_heads = nn.ModuleList(student_heads)

    @property
    def out_dim(self) -> int:
        stages = list(self.heads) + list(self.student_heads)
        return stages[-1].out_dim if stages else self.trunk.out_dim

    def _trunk(self, x: torch.Tensor, mask: bool) -> Tuple[torch.Tensor, Dict[str, object]]:
        if hasattr(self.trunk, "forward_with_extras"):
            return self.trunk.forward_with_extras(x, mask=mask)
        if getattr(self.trunk, "supports_masking", False):
            return self.trunk(x, mask=mask), {}
        return self.trunk(x), {}

    @staticmethod
    def _head(head: nn.Module, z: torch.Tensor, extras: Dict[str, object]) -> torch.Tensor:
        return head(z, extras) if getattr(head, "uses_trunk_extras", False) else head(z)

    def forward(self, views: List[torch.Tensor], mask: bool = False, use_student_heads: bool = True) -> ViewOutputs:
        outputs: List[Optional[torch.Tensor]] = [None] * len(views)
        extras: Dict[str, list] = {}
        groups = {}
        for i, v in enumerate(views):
            groups.setdefault(tuple(v.shape[1:]), []).append(i)
        for indices in groups.values():
            x = torch.cat([views[i] for i in indices]) if len(indices) > 1 else views[indices[0]]
            z, trunk_extras = self._trunk(x, mask)
            for head in self.heads:
                z = self._head(head, z, trunk_extras)
            if use_student_heads:
                for head in self.student_heads:
                    z = self._head(head, z, trunk_extras)
            for chunk, i in zip(z.chunk(len(indices)), indices):
                outputs[i] = chunk
            for key, value in trunk_extras.items():
                per_view = extras.setdefault(key, [None] * len(views))
                parts = value.chunk(len(indices)) if isinstance(value, torch.Tensor) else [value] * len(indices)
                for part, i in zip(parts, indices):
                    per_view[i] = part
        return ViewOutputs(outputs, extras)


def make_teacher(student: SSLModel) -> SSLModel:
    """EMA teacher: a copy of trunk and shared heads, without student-only heads, never trained by SGD."""
    trunk = copy.deepcopy(student.trunk)
    if hasattr(trunk, "as_teacher"):  # e.g. data2vec's ViT returns its block outputs as the teacher
        trunk.as_teacher()
    teacher = SSLModel(trunk, [copy.deepcopy(h) for h in student.heads], [])
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update(teacher: SSLModel, student: SSLModel, momentum: float) -> None:
    """teacher <- m * teacher + (1 - m) * student, for parameters and float buffers (BN statistics)."""
    s_params = dict(student.named_parameters())
    for name, t in teacher.named_parameters():
        t.mul_(momentum).add_(s_params[name].detach(), alpha=1.0 - momentum)
    s_buffers = dict(student.named_buffers())
    for name, t in teacher.named_buffers():
        src = s_buffers[name]
        if t.dtype.is_floating_point:
            t.mul_(momentum).add_(src, alpha=1.0 - momentum)
        else:
            t.copy_(src)
