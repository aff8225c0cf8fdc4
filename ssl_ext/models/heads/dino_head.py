"""DINO's projection head (Caron et al. 2021, "Emerging Properties in Self-Supervised
Vision Transformers", arXiv:2104.14294).

An MLP (``in_dim -> hidden_dim -> ... -> bottleneck_dim``, GELU, optional BatchNorm),
L2 normalization of the bottleneck, then a weight-normalized linear layer without bias
to ``out_dim`` (65536) dimensions. The weight normalization's gain is fixed to 1 when
``norm_last_layer`` (DINO's default, which stabilizes training) and learned otherwise;
here the layer is written out (``gain · normalize(V) x``) instead of using the
deprecated ``weight_norm`` hook, which is the same function. It belongs to
``MODEL.HEADS`` so the EMA teacher has its own copy.
"""
from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from registry import register_head
from ssl_ext.models._validation import positive_int


@register_head("dino_head")
class DINOHead(nn.Module):
    """``(N, in_dim) -> (N, out_dim)`` logits.

    Args:
        in_dim: width of the trunk features (build-time context).
        out_dim: K, the number of output dimensions (65536 in DINO).
        hidden_dim: width of the hidden layers (2048).
        bottleneck_dim: width before the last layer (256).
        num_layers: linear layers of the MLP (3).
        use_bn: BatchNorm after the hidden layers (false for ViTs).
        norm_last_layer: fix the last layer's weight-norm gain to 1 (true).
    """

    def __init__(
        self, in_dim: int, out_dim: int = 65536, hidden_dim: int = 2048, bottleneck_dim: int = 256,
        num_layers: int = 3, use_bn: bool = False, norm_last_layer: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (("in_dim", in_dim), ("out_dim", out_dim), ("hidden_dim", hidden_dim),
                            ("bottleneck_dim", bottleneck_dim), ("num_layers", num_layers)):
            positive_int(name, value)
        for name, flag in (("use_bn", use_bn), ("norm_last_layer", norm_last_layer)):
            if not isinstance(flag, bool):
                raise ValueError(f"{name} must be true or false, got {flag!r}")
        layers: List[nn.Module] = []
        previous = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(previous, hidden_dim))
            if use_bn:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.GELU())
            previous = hidden_dim
        layers.append(nn.Linear(previous, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        for module in self.mlp:
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        self.last_layer_direction = nn.Parameter(torch.empty(out_dim, bottleneck_dim))
        nn.init.trunc_normal_(self.last_layer_direction, std=0.02)
        self.last_layer_gain = None if norm_last_layer else nn.Parameter(torch.ones(out_dim, 1))
        self.in_dim, self.out_dim = in_dim, out_dim
        self.norm_last_layer = norm_last_layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1)
        weight = F.normalize(self.last_layer_direction, dim=1)
        if self.last_layer_gain is not None:
            weight = self.last_layer_gain * weight
        return F.linear(x, weight)
