"""MLP projection head (SimCLR, Chen et al. 2020, arXiv:2002.05709).

Linear layers of the given widths with BatchNorm and ReLU between them: the
non-linear projection SimCLR found to improve the representation below it.
Hidden linear layers have no bias when followed by BatchNorm (BN's shift makes
it redundant). ``last_bn=True`` adds a BatchNorm after the output layer, as in
SimCLR v2 and VICReg-style expanders.
"""
from __future__ import annotations

from typing import List

import torch
from torch import nn

from registry import register_head
from ssl_ext.models._validation import positive_int, positive_int_list


@register_head("mlp")
class MLPHead(nn.Module):
    """``(N, in_dim) -> (N, dims[-1])``.

    Args:
        in_dim: width of the previous stage (build-time context).
        dims: widths of the hidden layers followed by the output width.
        use_bn: BatchNorm after every hidden linear layer.
        last_bn: BatchNorm (affine) after the output layer.
    """

    def __init__(self, in_dim: int, dims: List[int] = (2048, 128), use_bn: bool = True, last_bn: bool = False) -> None:
        super().__init__()
        positive_int("in_dim", in_dim)
        widths = positive_int_list("dims", dims)
        for name, flag in (("use_bn", use_bn), ("last_bn", last_bn)):
            if not isinstance(flag, bool):
                raise ValueError(f"{name} must be true or false, got {flag!r}")
        layers: List[nn.Module] = []
        previous = in_dim
        for width in widths[:-1]:
            layers.append(nn.Linear(previous, width, bias=not use_bn))
            if use_bn:
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.ReLU(inplace=True))
            previous = width
        layers.append(nn.Linear(previous, widths[-1], bias=not last_bn))
        if last_bn:
            layers.append(nn.BatchNorm1d(widths[-1]))
        self.layers = nn.Sequential(*layers)
        self.in_dim = in_dim
        self.out_dim = widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
