"""MAE's lightweight decoder (He et al. 2021, "Masked Autoencoders Are Scalable Vision
Learners", arXiv:2111.06377).

The encoder (the ``vit`` trunk with ``output: tokens`` and ``patch_drop: 0.75``) sees only
the visible patches. This head embeds its tokens to ``decoder_dim``, puts a shared learned
mask token at every hidden grid position (the trunk reports the visible ones as
``kept_patch_ids``), adds fixed 2-D sine-cosine positional embeddings (MAE's choice),
runs ``depth`` transformer blocks and predicts the ``patch_size² · channels`` pixels of
every patch. The output is flattened to ``(N, patches · patch_size² · channels)``, patch
by patch in the order of ``mae_loss``'s ``patchify`` (rows of patches, then pixel rows,
pixel columns, channels), so the head keeps the ``(N, in_dim) -> (N, out_dim)`` contract.

Given pooled ``(N, in_dim)`` features instead of tokens, the input is read as a class
token alone (every patch hidden).
"""
from __future__ import annotations

import math
from typing import Dict, Optional

import torch
from torch import nn

from registry import register_head
from ssl_ext.models._validation import positive_float, positive_int
from ssl_ext.models.trunks.vit import TransformerBlock


def sincos_2d_position_embedding(grid_h: int, grid_w: int, dim: int) -> torch.Tensor:
    """Fixed ``(grid_h·grid_w, dim)`` embedding: sine/cosine of each axis at ``dim/4`` frequencies (MAE, MoCo v3)."""
    if dim % 4:
        raise ValueError(f"sine-cosine positional embeddings need a width divisible by 4, got {dim}")
    frequencies = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    rows, cols = torch.meshgrid(torch.arange(grid_h, dtype=torch.float64), torch.arange(grid_w, dtype=torch.float64),
                                indexing="ij")
    parts = []
    for axis in (cols.reshape(-1), rows.reshape(-1)):
        angles = axis[:, None] * frequencies[None, :]
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1).float()


@register_head("mae_decoder")
class MAEDecoder(nn.Module):
    """Encoder tokens ``(N, 1 + visible, in_dim)`` -> pixel predictions ``(N, out_dim)``.

    Args:
        in_dim: the encoder width (build-time context).
        img_size, patch_size, in_channels: the images the encoder sees (out_dim = patches · patch_size² · in_channels).
        decoder_dim: decoder width (MAE: 512).
        depth: decoder blocks (MAE: 8).
        num_heads: attention heads (MAE: 16).
        mlp_ratio: hidden width of the block MLPs (4).
    """

    uses_trunk_extras = True

    def __init__(
        self, in_dim: int, img_size: int = 224, patch_size: int = 16, in_channels: int = 3, decoder_dim: int = 512,
        depth: int = 8, num_heads: int = 16, mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        for name, value in (("in_dim", in_dim), ("img_size", img_size), ("patch_size", patch_size),
                            ("in_channels", in_channels), ("decoder_dim", decoder_dim), ("depth", depth),
                            ("num_heads", num_heads)):
            positive_int(name, value)
        positive_float("mlp_ratio", mlp_ratio)
        if img_size % patch_size:
            raise ValueError(f"img_size ({img_size}) must be a multiple of patch_size ({patch_size})")
        if decoder_dim % num_heads or decoder_dim % 4:
            raise ValueError(f"decoder_dim ({decoder_dim}) must be divisible by num_heads ({num_heads}) and by 4")
        self.grid = img_size // patch_size
        self.num_patches = self.grid**2
        self.patch_pixels = patch_size * patch_size * in_channels
        self.in_dim, self.out_dim = in_dim, self.num_patches * self.patch_pixels
        self.embed = nn.Linear(in_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        position = torch.cat([torch.zeros(1, decoder_dim), sincos_2d_position_embedding(self.grid, self.grid, decoder_dim)])
        self.register_buffer("position", position.unsqueeze(0), persistent=False)
        self.blocks = nn.ModuleList(
            TransformerBlock(decoder_dim, num_heads, float(mlp_ratio), qkv_bias=True, drop_path=0.0) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.predict = nn.Linear(decoder_dim, self.patch_pixels)
        nn.init.normal_(self.mask_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, tokens: torch.Tensor, extras: Optional[Dict[str, torch.Tensor]] = None) -> torch.Tensor:
        if tokens.dim() == 2:
            tokens = tokens.unsqueeze(1)
        batch = tokens.shape[0]
        visible = tokens.shape[1] - 1
        kept = (extras or {}).get("kept_patch_ids")
        if kept is None:
            if visible not in (0, self.num_patches):
                raise ValueError(
                    f"mae_decoder: got {visible} patch tokens without the trunk's kept_patch_ids; use the vit trunk "
                    f"with output: tokens (it reports which patches were visible)"
                )
            kept = torch.arange(visible, device=tokens.device).expand(batch, visible)
        if visible + (self.num_patches - visible) != self.num_patches or kept.shape != (batch, visible):
            raise ValueError(f"mae_decoder: kept_patch_ids {tuple(kept.shape)} do not match {visible} visible tokens")
        x = self.embed(tokens)
        grid_tokens = self.mask_token.to(x.dtype).expand(batch, self.num_patches, x.shape[-1]).clone()
        grid_tokens = grid_tokens.scatter(1, kept.unsqueeze(-1).expand(-1, -1, x.shape[-1]), x[:, 1:])
        x = torch.cat([x[:, :1], grid_tokens], dim=1) + self.position.to(x.dtype)
        for block in self.blocks:
            x = block(x)
        return self.predict(self.norm(x))[:, 1:].reshape(batch, self.out_dim)
