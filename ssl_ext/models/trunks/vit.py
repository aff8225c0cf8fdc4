"""Vision Transformer trunk with MSN's random patch drop.

ViT: Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words", arXiv:2010.11929
(pre-norm blocks, class token, learned positional embeddings). Patch drop:
Assran et al. 2022, "Masked Siamese Networks for Label-Efficient Learning"
(MSN), arXiv:2204.07141, which drops a random 15 % of the anchor view's patch
tokens (the class token is always kept) and lets the target view see all.

Choices where the papers leave room:

* Positional embeddings are learned for the ``img_size // patch_size`` grid and
  resized with bicubic interpolation on the 2-D grid for other crop sizes (MSN's
  96-pixel focal views); at the native grid they are used unchanged.
* Patch drop keeps ``floor(num_patches * (1 - patch_drop))`` tokens, at least
  one. MSN's code draws one permutation for the whole batch; by default we draw
  one per sample (``patch_drop_per_sample``), which has the same expectation and
  decorrelates the samples; set it false for MSN's batch-shared draw.
* ``forward`` returns the class token after the final LayerNorm, MSN's output.

Masked image modelling reuses the same draw (one uniform number per patch, the
lowest ``kept_patch_count`` are kept):

* MAE (He et al. 2021, arXiv:2111.06377): ``patch_drop: 0.75``, ``output: tokens``;
  the encoder sees only the visible patches and reports which they were
  (``forward_with_extras``) so a decoder head can put mask tokens in their place.
* data2vec (Baevski et al. 2022, arXiv:2202.03555): ``mask_style: token`` replaces
  the hidden patches with a learned mask token instead of dropping them, and
  ``teacher_target_blocks: K`` makes the EMA teacher's copy return the patch tokens
  of its last K blocks, the raw material of data2vec's targets.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from registry import register_trunk
from ssl_ext.models._validation import check_layer_names, one_of, positive_float, positive_int, probability

# (embed_dim, depth, num_heads) of the standard sizes (DeiT's tiny/small, ViT's base/large).
PRESETS: Dict[str, Tuple[int, int, int]] = {
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
}
CUSTOM = "custom"
OUTPUTS = ("cls", "tokens")
MASK_STYLES = ("drop", "token")


class MultiHeadSelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if torch.jit.is_tracing():
            # fvcore counts FLOPs by tracing and has no rule for the fused kernel: spell it out.
            weights = torch.softmax((q @ k.transpose(-2, -1)) * self.head_dim**-0.5, dim=-1)
            attended = weights @ v
        else:
            attended = F.scaled_dot_product_attention(q, k, v)
        return self.proj(attended.transpose(1, 2).reshape(batch, tokens, dim))


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016, arXiv:1603.09382): drop a residual branch per sample."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        keep = 1.0 - self.rate
        survivors = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * survivors / keep


class TransformerBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, drop_path: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiHeadSelfAttention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        # Identity at rate 0 keeps the traced graph (FLOP counting) free of no-op modules.
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def kept_patch_count(num_patches: int, patch_drop: float) -> int:
    """Patch tokens that survive ``patch_drop``: ``floor(num_patches * (1 - patch_drop))``, at least 1."""
    return max(1, int(math.floor(num_patches * (1.0 - patch_drop) + 1e-9)))


def draw_kept_patch_ids(draws: int, num_patches: int, keep: int, device) -> torch.Tensor:
    """``(draws, keep)`` patch positions, the lowest ``keep`` of one uniform draw per patch, placed on ``device``.

    Drawn on the CPU generator whatever ``device`` is: a seed then gives the same masks on CPU and GPU
    (they are the training signal of MAE and data2vec, and MSN's anchors), and they follow the trainer's
    per-step reseeding. The draw is small; through pinned memory its indices reach a GPU without a
    stream synchronisation (a copy from pageable memory may wait for the queued kernels).
    """
    kept = torch.rand(draws, num_patches).argsort(dim=1)[:, :keep]
    if torch.device(device).type == "cuda":
        kept = kept.pin_memory()
    return kept.to(device, non_blocking=True)


@register_trunk("vit")
class VisionTransformer(nn.Module):
    """ViT trunk: ``(N, C, H, W) -> (N, embed_dim)`` class-token features.

    Args:
        preset: ``tiny`` | ``small`` | ``base`` | ``large``, or ``custom`` to set
            ``embed_dim``, ``depth`` and ``num_heads`` yourself (tiny CPU models).
        patch_size: side of the square patches; crop sides must be multiples of it.
        img_size: the crop side the positional embeddings are learned for.
        in_channels: input channels.
        embed_dim, depth, num_heads: only with ``preset: custom``.
        mlp_ratio: hidden width of the block MLPs relative to ``embed_dim``.
        qkv_bias: bias in the query/key/value projection.
        patch_drop: fraction of patch tokens dropped when ``forward(x, mask=True)``.
        patch_drop_per_sample: draw the dropped tokens per sample (else one draw per batch, as MSN's code).
        drop_path_rate: stochastic depth rate of the last block (linearly increasing from 0).
        output: ``cls`` (class token, ``(N, embed_dim)``) or ``tokens`` (every token after
            the final LayerNorm, ``(N, 1 + patches, embed_dim)``, class token first; MAE's
            encoder output, data2vec's student output).
        mask_style: what ``mask=True`` does to the hidden patches: ``drop`` them (MSN, MAE)
            or replace them with a learned ``mask_token`` (data2vec).
        teacher_target_blocks: data2vec: K > 0 makes the EMA teacher's copy (see
            ``as_teacher``) return the patch tokens at the end of its last K blocks,
            ``(N, K, patches, embed_dim)``, instead of ``output``.

    ``forward_with_extras(x, mask)`` also returns what masking did, per sample:
    ``patch_mask`` ``(N, patches)`` bool (True: hidden from the encoder) and, for
    ``drop``, ``kept_patch_ids`` ``(N, kept)`` (grid positions of the visible tokens, in
    token order). The masks are drawn from the global torch RNG inside the forward pass,
    so the per-step reseeding of the trainer makes them resumable.

    Layer names for ``extract_layers`` (every token passes through the final
    LayerNorm first, as in DINO's and MSN's linear evaluation):

    * ``cls_last{n}``: class tokens of the last ``n`` blocks concatenated, ``(N, n*embed_dim)``;
      ``cls_last1`` equals ``forward``.
    * ``avgpool_last{n}``: mean of the patch tokens of each of the last ``n`` blocks, concatenated.
    * ``cls_block{i}`` / ``avgpool_block{i}``: the same for block ``i`` alone (1-based).
    """

    supports_masking = True

    def __init__(
        self,
        preset: str = "small",
        patch_size: int = 16,
        img_size: int = 224,
        in_channels: int = 3,
        embed_dim: Optional[int] = None,
        depth: Optional[int] = None,
        num_heads: Optional[int] = None,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        patch_drop: float = 0.15,
        patch_drop_per_sample: bool = True,
        drop_path_rate: float = 0.0,
        output: str = "cls",
        mask_style: str = "drop",
        teacher_target_blocks: int = 0,
    ) -> None:
        super().__init__()
        embed_dim, depth, num_heads = self._resolve_size(preset, embed_dim, depth, num_heads)
        positive_int("patch_size", patch_size)
        positive_int("img_size", img_size)
        positive_int("in_channels", in_channels)
        positive_float("mlp_ratio", mlp_ratio)
        probability("patch_drop", patch_drop)
        probability("drop_path_rate", drop_path_rate)
        for name, flag in (("qkv_bias", qkv_bias), ("patch_drop_per_sample", patch_drop_per_sample)):
            if not isinstance(flag, bool):
                raise ValueError(f"{name} must be true or false, got {flag!r}")
        one_of("output", output, OUTPUTS)
        one_of("mask_style", mask_style, MASK_STYLES)
        if isinstance(teacher_target_blocks, bool) or not isinstance(teacher_target_blocks, int) or not (
            0 <= teacher_target_blocks <= depth
        ):
            raise ValueError(f"teacher_target_blocks must be an integer in [0, depth={depth}], got {teacher_target_blocks!r}")
        if img_size % patch_size:
            raise ValueError(f"img_size ({img_size}) must be a multiple of patch_size ({patch_size})")

        self.preset = preset
        self.patch_size = patch_size
        self.img_size = img_size
        self.in_channels = in_channels
        self.embed_dim = self.out_dim = embed_dim
        self.depth = depth
        self.num_heads = num_heads
        self.patch_drop = float(patch_drop)
        self.patch_drop_per_sample = patch_drop_per_sample
        self.grid_size = img_size // patch_size
        self.output = output
        self.mask_style = mask_style
        self.teacher_target_blocks = teacher_target_blocks
        # Set on the EMA teacher's copy only (``as_teacher``); not a parameter, so not in state dicts.
        self.serves_as_teacher = False

        self.patch_embed = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid_size**2, embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if mask_style == "token" else None
        rates = [float(drop_path_rate) * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            TransformerBlock(embed_dim, num_heads, float(mlp_ratio), qkv_bias, rate) for rate in rates
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.layer_names = self._enumerate_layer_names(depth)
        self._init_weights()

    @staticmethod
    def _resolve_size(preset, embed_dim, depth, num_heads) -> Tuple[int, int, int]:
        one_of("preset", preset, [*PRESETS, CUSTOM])
        given = {"embed_dim": embed_dim, "depth": depth, "num_heads": num_heads}
        if preset != CUSTOM:
            overridden = [name for name, value in given.items() if value is not None]
            if overridden:
                raise ValueError(
                    f"{', '.join(overridden)} can only be set with preset: custom (preset {preset!r} fixes "
                    f"embed_dim, depth, num_heads = {PRESETS[preset]})"
                )
            return PRESETS[preset]
        for name, value in given.items():
            if value is None:
                raise ValueError(f"preset: custom needs {name}; set embed_dim, depth and num_heads")
            positive_int(name, value)
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        return embed_dim, depth, num_heads

    @staticmethod
    def _enumerate_layer_names(depth: int) -> List[str]:
        names = []
        for kind in ("cls", "avgpool"):
            names += [f"{kind}_last{n}" for n in range(1, depth + 1)]
            names += [f"{kind}_block{i}" for i in range(1, depth + 1)]
        return names

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if self.mask_token is not None:
            nn.init.trunc_normal_(self.mask_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    # ------------------------------------------------------------------ tokens
    def interpolated_pos_embed(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """Positional embeddings ``(1, 1 + grid_h*grid_w, D)`` for a ``grid_h x grid_w`` patch grid."""
        if (grid_h, grid_w) == (self.grid_size, self.grid_size):
            return self.pos_embed
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        patch_pos = patch_pos.reshape(1, self.grid_size, self.grid_size, self.embed_dim).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos, size=(grid_h, grid_w), mode="bicubic", align_corners=False)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, self.embed_dim)
        return torch.cat([cls_pos, patch_pos], dim=1)

    def _draw_kept_patches(self, batch: int, num_patches: int, device) -> torch.Tensor:
        """Grid positions ``(N, kept)`` of the patches the encoder sees, lowest of one uniform draw per patch."""
        keep = kept_patch_count(num_patches, self.patch_drop)
        draws = batch if self.patch_drop_per_sample else 1
        return draw_kept_patch_ids(draws, num_patches, keep, device).expand(batch, keep)

    def embed_tokens(self, x: torch.Tensor, mask: bool = False) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Embedded input tokens ``(N, 1 + T, D)``, class token first, and what masking did (see the class doc)."""
        height, width = x.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"vit: image size {height}x{width} is not a multiple of patch_size {self.patch_size}; "
                f"use crop sizes that are multiples of {self.patch_size}"
            )
        patches = self.patch_embed(x)
        grid_h, grid_w = patches.shape[-2:]
        patches = patches.flatten(2).transpose(1, 2)
        batch, num_patches, dim = patches.shape
        pos = self.interpolated_pos_embed(grid_h, grid_w)
        extras: Dict[str, torch.Tensor] = {}
        if mask and self.patch_drop > 0:
            kept = self._draw_kept_patches(batch, num_patches, patches.device)
            hidden = torch.ones(batch, num_patches, dtype=torch.bool, device=patches.device)
            hidden.scatter_(1, kept, False)
            extras["patch_mask"] = hidden
            if self.mask_style == "token":
                patches = torch.where(hidden.unsqueeze(-1), self.mask_token.to(patches.dtype), patches)
                patches = patches + pos[:, 1:]
            else:
                patches = torch.gather(patches + pos[:, 1:], 1, kept.unsqueeze(-1).expand(batch, kept.shape[1], dim))
                extras["kept_patch_ids"] = kept
        else:
            patches = patches + pos[:, 1:]
        cls = (self.cls_token + pos[:, :1]).expand(batch, -1, -1)
        return torch.cat([cls, patches], dim=1), extras

    def tokens(self, x: torch.Tensor, mask: bool = False) -> torch.Tensor:
        """Embedded input tokens ``(N, 1 + kept patches, D)``, class token first."""
        return self.embed_tokens(x, mask)[0]

    def as_teacher(self) -> "VisionTransformer":
        """Mark this copy as the EMA teacher (``make_teacher`` calls it): with
        ``teacher_target_blocks`` it then returns data2vec's block outputs."""
        self.serves_as_teacher = True
        return self

    # ----------------------------------------------------------------- outputs
    def forward(self, x: torch.Tensor, mask: bool = False) -> torch.Tensor:
        """``output`` features; ``mask=True`` (student views) hides ``patch_drop`` of the patches."""
        return self.forward_with_extras(x, mask)[0]

    def forward_with_extras(self, x: torch.Tensor, mask: bool = False) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """``forward``'s output and the per-sample masking record (``patch_mask``, ``kept_patch_ids``)."""
        x, extras = self.embed_tokens(x, mask)
        if self.serves_as_teacher and self.teacher_target_blocks > 0:
            first_kept = self.depth - self.teacher_target_blocks
            kept_blocks = []
            for index, block in enumerate(self.blocks):
                x = block(x)
                if index >= first_kept:
                    kept_blocks.append(x[:, 1:])
            return torch.stack(kept_blocks, dim=1), extras
        for block in self.blocks:
            x = block(x)
        if self.output == "tokens":
            return self.norm(x), extras
        return self.norm(x[:, 0]), extras

    def extract_layers(self, x: torch.Tensor, names: Sequence[str]) -> Dict[str, torch.Tensor]:
        names = check_layer_names(f"vit-{self.preset}", names, self.layer_names)
        needed = set()
        for name in names:
            kind_count = name.split("_", 1)[1]
            if kind_count.startswith("last"):
                count = int(kind_count[len("last"):])
                needed.update(range(self.depth - count, self.depth))
            else:
                needed.add(int(kind_count[len("block"):]) - 1)
        normed: Dict[int, torch.Tensor] = {}
        x = self.tokens(x)
        for index, block in enumerate(self.blocks[: max(needed) + 1]):
            x = block(x)
            if index in needed:
                normed[index] = self.norm(x)

        def summary(kind: str, index: int) -> torch.Tensor:
            tokens = normed[index]
            return tokens[:, 0] if kind == "cls" else tokens[:, 1:].mean(dim=1)

        features = {}
        for name in names:
            kind, kind_count = name.split("_", 1)
            if kind_count.startswith("last"):
                count = int(kind_count[len("last"):])
                features[name] = torch.cat([summary(kind, i) for i in range(self.depth - count, self.depth)], dim=1)
            else:
                features[name] = summary(kind, int(kind_count[len("block"):]) - 1)
        return features

    def layer_dims(self) -> Dict[str, int]:
        dims = {}
        for name in self.layer_names:
            kind_count = name.split("_", 1)[1]
            count = int(kind_count[len("last"):]) if kind_count.startswith("last") else 1
            dims[name] = count * self.embed_dim
        return dims
