"""The trained model: a trunk, its heads, student-only heads, and an optional EMA teacher."""
from __future__ import annotations

import copy
from typing import List, Optional, Sequence

import torch
from torch import nn


class SSLModel(nn.Module):
    """Trunk followed by ``heads`` (shared with the teacher) and ``student_heads`` (student only).

    ``forward(views, mask=False)`` returns one output per view. Views of equal
    shape go through the network together (multi-crop: one pass per resolution),
    which keeps BatchNorm statistics per resolution group as in DINO/MSN.
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

    def _trunk(self, x: torch.Tensor, mask: bool) -> torch.Tensor:
        if getattr(self.trunk, "supports_masking", False):
            return self.trunk(x, mask=mask)
        return self.trunk(x)

    def forward(self, views: List[torch.Tensor], mask: bool = False, use_student_heads: bool = True) -> List[torch.Tensor]:
        outputs: List[Optional[torch.Tensor]] = [None] * len(views)
        groups = {}
        for i, v in enumerate(views):
            groups.setdefault(tuple(v.shape[1:]), []).append(i)
        for indices in groups.values():
            x = torch.cat([views[i] for i in indices]) if len(indices) > 1 else views[indices[0]]
            z = self._trunk(x, mask)
            for head in self.heads:
                z = head(z)
            if use_student_heads:
                for head in self.student_heads:
                    z = head(z)
            for chunk, i in zip(z.chunk(len(indices)), indices):
                outputs[i] = chunk
        return outputs  # type: ignore[return-value]


def make_teacher(student: SSLModel) -> SSLModel:
    """EMA teacher: a copy of trunk and shared heads, without student-only heads, never trained by SGD."""
    teacher = SSLModel(copy.deepcopy(student.trunk), [copy.deepcopy(h) for h in student.heads], [])
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
