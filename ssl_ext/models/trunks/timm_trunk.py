"""Any timm model as a trunk (Wightman, "PyTorch Image Models", github.com/huggingface/pytorch-image-models).

``model_name`` is any name of ``timm.list_models()``; the model is built with
random weights and no classifier (``num_classes=0``), so ``forward`` returns
timm's pooled pre-logits features. Weights are never downloaded: SSL starts from
random initialisation, and evaluation loads checkpoints through
``MODEL.WEIGHTS_INIT`` (timm state dicts load there as they are).

ViTs (timm's ``VisionTransformer``, incl. DeiT) support MSN's random patch drop
(Assran et al. 2022, arXiv:2204.07141) with ``forward(x, mask=True)``: the drop
happens in timm's own patch-dropout slot, after the positional embeddings and
before the blocks, and keeps the prefix (class, register, distillation) tokens.
They are built with ``dynamic_img_size=True`` so crops of other sizes (MSN's
focal views) get interpolated positional embeddings.

Evaluation layers (``extract_layers``), all ``(N, D)``:

* ``pooled``: the ``forward`` output, for every model;
* ViTs: the names of the ``vit`` trunk, ``cls_last{n}``, ``avgpool_last{n}``,
  ``cls_block{i}``, ``avgpool_block{i}`` (tokens through the final norm first,
  as in DINO's and MSN's linear evaluation; ``cls_*`` only with a class token);
* other models with timm's ``forward_intermediates`` (ResNet, ConvNeXt,
  EfficientNet, RegNet, Swin, ...): ``stage{i}``, the globally average-pooled
  output of the ``i``-th feature stage of ``model.feature_info`` (1-based).
"""
from __future__ import annotations

import difflib
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
from torch import nn

from registry import register_trunk
from ssl_ext.models._validation import check_layer_names, positive_int, probability
from ssl_ext.models.trunks.vit import draw_kept_patch_ids, kept_patch_count

POOLED = "pooled"
# Modules whose entrypoints build timm's VisionTransformer, which accepts ``dynamic_img_size``.
VIT_MODULES = ("vision_transformer", "deit")
DEFAULT_PATCH_DROP = 0.15


def _timm():
    # timm takes seconds to import; only runs that use this trunk pay for it.
    import timm

    return timm


def drop_patch_tokens(tokens: torch.Tensor, num_prefix_tokens: int, patch_drop: float, per_sample: bool) -> torch.Tensor:
    """Keep the prefix tokens and a random ``1 - patch_drop`` of the patch tokens of ``(N, L, D)`` tokens.

    Draws from the global CPU generator whatever the device (the trainer reseeds it every step); one
    draw per sample, or one shared by the batch as in MSN's code.
    """
    prefix, patches = tokens[:, :num_prefix_tokens], tokens[:, num_prefix_tokens:]
    batch, num_patches, dim = patches.shape
    keep = kept_patch_count(num_patches, patch_drop)
    draws = batch if per_sample else 1
    kept = draw_kept_patch_ids(draws, num_patches, keep, tokens.device)
    patches = torch.gather(patches, 1, kept.expand(batch, keep).unsqueeze(-1).expand(batch, keep, dim))
    return torch.cat([prefix, patches], dim=1)


@register_trunk("timm")
class TimmTrunk(nn.Module):
    """A timm model without its classifier: ``(N, C, H, W) -> (N, out_dim)``.

    Args:
        model_name: a timm model name, e.g. ``resnet18``, ``vit_small_patch16_224``, ``convnext_atto``.
        pretrained: must stay false; ssl_ext never downloads weights (use ``MODEL.WEIGHTS_INIT``).
        in_channels: input channels (timm's ``in_chans``).
        img_size: the crop side the model is built for (ViT-like models; others reject it).
        patch_drop: fraction of patch tokens dropped by ``forward(x, mask=True)`` (ViTs only;
            default 0.15 as in MSN).
        patch_drop_per_sample: one draw per sample (else one per batch, as MSN's code).
        model_kwargs: further keyword arguments of the timm model, e.g. ``drop_path_rate``,
            ``depth``, ``embed_dim`` (they override the named variant's).
    """

    def __init__(
        self,
        model_name: str,
        pretrained: bool = False,
        in_channels: int = 3,
        img_size: Optional[int] = None,
        patch_drop: Optional[float] = None,
        patch_drop_per_sample: bool = True,
        model_kwargs: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__()
        timm = _timm()
        if not isinstance(model_name, str) or not timm.is_model(model_name):
            close = difflib.get_close_matches(str(model_name), timm.list_models(), n=3, cutoff=0.6)
            hint = f"; did you mean {close}?" if close else "; see timm.list_models()"
            raise ValueError(f"timm trunk: unknown model_name {model_name!r}{hint}")
        if pretrained is not False:
            raise ValueError(
                f"timm trunk: pretrained={pretrained!r} is not supported: ssl_ext never downloads weights. "
                "Set pretrained: false and load a checkpoint file with MODEL.WEIGHTS_INIT.PARAMS_FILE instead."
            )
        positive_int("in_channels", in_channels)
        if not isinstance(patch_drop_per_sample, bool):
            raise ValueError(f"patch_drop_per_sample must be true or false, got {patch_drop_per_sample!r}")
        if model_kwargs is not None and not isinstance(model_kwargs, Mapping):
            raise ValueError(f"model_kwargs must be a mapping of timm keyword arguments, got {model_kwargs!r}")

        kwargs: Dict[str, Any] = {"num_classes": 0, "in_chans": in_channels}
        if img_size is not None:
            kwargs["img_size"] = positive_int("img_size", img_size)
        if timm.models.is_model_in_modules(model_name, VIT_MODULES):
            kwargs["dynamic_img_size"] = True
        kwargs.update(dict(model_kwargs or {}))
        try:
            self.model = timm.create_model(model_name, pretrained=False, **kwargs)
        except TypeError as exc:
            raise ValueError(
                f"timm trunk: {model_name!r} rejected its arguments {sorted(kwargs)}: {exc}. "
                "Remove the argument from the trunk's PARAMS (or model_kwargs)."
            ) from exc

        self.model_name = model_name
        self.in_channels = in_channels
        self.out_dim = int(getattr(self.model, "head_hidden_size", None) or self.model.num_features)
        self.is_vit = isinstance(self.model, timm.models.VisionTransformer)
        self.supports_masking = self.is_vit
        if patch_drop is not None and not self.is_vit and patch_drop != 0:
            raise ValueError(
                f"timm trunk: patch_drop={patch_drop!r} needs a timm VisionTransformer; {model_name!r} is a "
                f"{type(self.model).__name__}. Remove patch_drop or choose a ViT (e.g. vit_small_patch16_224)."
            )
        self.patch_drop = probability("patch_drop", DEFAULT_PATCH_DROP if patch_drop is None else patch_drop)
        self.patch_drop_per_sample = patch_drop_per_sample
        self._masking = False
        if self.is_vit:
            # timm's VisionTransformer calls ``patch_drop`` on the position-embedded tokens right before
            # the blocks (an Identity unless timm's own training-time dropout is on): MSN's drop goes there.
            self.model.patch_drop.register_forward_hook(self._drop_hook)

        self._num_stages = 0 if self.is_vit else self._count_stages()
        self.layer_names = self._enumerate_layer_names()

    def _count_stages(self) -> int:
        has_intermediates = callable(getattr(self.model, "forward_intermediates", None))
        return len(getattr(self.model, "feature_info", None) or []) if has_intermediates else 0

    def _enumerate_layer_names(self) -> List[str]:
        names: List[str] = []
        if self.is_vit:
            depth = len(self.model.blocks)
            kinds = ("cls", "avgpool") if self.model.cls_token is not None else ("avgpool",)
            for kind in kinds:
                names += [f"{kind}_last{n}" for n in range(1, depth + 1)]
                names += [f"{kind}_block{i}" for i in range(1, depth + 1)]
        else:
            names += [f"stage{i}" for i in range(1, self._num_stages + 1)]
        return names + [POOLED]

    def _drop_hook(self, module: nn.Module, inputs: Any, tokens: torch.Tensor) -> Optional[torch.Tensor]:
        if not self._masking:
            return None
        return drop_patch_tokens(tokens, self.model.num_prefix_tokens, self.patch_drop, self.patch_drop_per_sample)

    # ----------------------------------------------------------------- outputs
    def forward(self, x: torch.Tensor, mask: bool = False) -> torch.Tensor:
        """Pooled features; ``mask=True`` drops ``patch_drop`` of a ViT's patch tokens (ignored by other models)."""
        self._masking = bool(mask) and self.is_vit and self.patch_drop > 0
        try:
            return self.model(x)
        finally:
            self._masking = False

    def _block_indices(self, names: Sequence[str]) -> List[int]:
        """0-based ViT block indices that the requested ``cls_*``/``avgpool_*`` names read."""
        depth = len(self.model.blocks)
        needed = set()
        for name in names:
            if name == POOLED:
                continue
            count_or_index = name.split("_", 1)[1]
            if count_or_index.startswith("last"):
                needed.update(range(depth - int(count_or_index[len("last"):]), depth))
            else:
                needed.add(int(count_or_index[len("block"):]) - 1)
        return sorted(needed)

    def _vit_layers(self, x: torch.Tensor, names: Sequence[str]) -> Dict[str, torch.Tensor]:
        indices = self._block_indices(names)
        features: Dict[str, torch.Tensor] = {}
        if not indices:
            return {POOLED: self.model(x)}
        final, intermediates = self.model.forward_intermediates(
            x, indices=indices, norm=True, return_prefix_tokens=True, output_fmt="NLC", intermediates_only=False
        )
        summaries = {}
        for index, (patches, prefix) in zip(indices, intermediates):
            summaries[("avgpool", index)] = patches.mean(dim=1)
            if prefix is not None and prefix.shape[1] > 0:
                summaries[("cls", index)] = prefix[:, 0]
        depth = len(self.model.blocks)
        for name in names:
            if name == POOLED:
                features[name] = self.model.forward_head(final)
                continue
            kind, count_or_index = name.split("_", 1)
            if count_or_index.startswith("last"):
                count = int(count_or_index[len("last"):])
                features[name] = torch.cat([summaries[(kind, i)] for i in range(depth - count, depth)], dim=1)
            else:
                features[name] = summaries[(kind, int(count_or_index[len("block"):]) - 1)]
        return features

    def _stage_layers(self, x: torch.Tensor, names: Sequence[str]) -> Dict[str, torch.Tensor]:
        stages = sorted({int(n[len("stage"):]) - 1 for n in names if n != POOLED})
        if not stages:
            return {POOLED: self.model(x)}
        if POOLED in names:
            final, maps = self.model.forward_intermediates(x, indices=stages, intermediates_only=False)
        else:
            maps = self.model.forward_intermediates(x, indices=stages, intermediates_only=True, stop_early=True)
        pooled_maps = {f"stage{i + 1}": fmap.mean(dim=(2, 3)) for i, fmap in zip(stages, maps)}
        if POOLED in names:
            pooled_maps[POOLED] = self.model.forward_head(final)
        return pooled_maps

    def extract_layers(self, x: torch.Tensor, names: Sequence[str]) -> Dict[str, torch.Tensor]:
        names = check_layer_names(f"timm-{self.model_name}", names, self.layer_names)
        features = self._vit_layers(x, names) if self.is_vit else self._stage_layers(x, names)
        return {name: features[name] for name in names}

    def layer_dims(self) -> Dict[str, int]:
        dims = {POOLED: self.out_dim}
        if self.is_vit:
            width = self.model.embed_dim
            for name in self.layer_names[:-1]:
                count_or_index = name.split("_", 1)[1]
                dims[name] = width * (int(count_or_index[len("last"):]) if count_or_index.startswith("last") else 1)
        else:
            for i, info in enumerate(self.model.feature_info[: self._num_stages]):
                dims[f"stage{i + 1}"] = int(info["num_chs"])
        return {name: dims[name] for name in self.layer_names}
