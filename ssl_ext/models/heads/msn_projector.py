"""MSN's projection head (Assran et al. 2022, arXiv:2204.07141).

Linear-BN-GELU blocks then a plain linear output layer, e.g. 384 -> 2048 ->
2048 -> 256 for ViT-S/16. The output is what MSN compares with its learnable
prototypes; the prototypes themselves belong to the loss (``msn_loss``), so that
they are shared by the student and the EMA target and excluded from weight decay.
"""
from __future__ import annotations

from typing import List

import torch
from torch import nn

from registry import register_head
from ssl_ext.models._validation import positive_int


@register_head("msn_projector")
class MSNProjector(nn.Module):
    """``(N, in_dim) -> (N, out_dim)``.

    Args:
        in_dim: width of the trunk features (build-time context).
        hidden_dim: width of the hidden layers (2048 in MSN).
        out_dim: output width (256 in MSN).
        num_layers: linear layers in total (3 in MSN, so two hidden layers).
        use_bn: BatchNorm after every hidden linear layer (MSN: true).
    """

    def __init__(
        self, in_dim: int, hidden_dim: int = 2048, out_dim: int = 256, num_layers: int = 3, use_bn: bool = True
    ) -> None:
        super().__init__()
        positive_int("in_dim", in_dim)
        positive_int("hidden_dim", hidden_dim)
        positive_int("out_dim", out_dim)
        positive_int("num_layers", num_layers)
        if not isinstance(use_bn, bool):
            raise ValueError(f"use_bn must be true or false, got {use_bn!r}")
        layers: List[nn.Module] = []
        previous = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(previous, hidden_dim))
            if use_bn:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.GELU())
            previous = hidden_dim
        layers.append(nn.Linear(previous, out_dim))
        self.layers = nn.Sequential(*layers)
        self.in_dim = in_dim
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
