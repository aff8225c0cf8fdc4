"""``ssl_ext_trunk``: any ssl_ext trunk (ViT with patch drop, ResNet, timm, ...) as a VISSL model trunk.

    MODEL:
      TRUNK:
        NAME: ssl_ext_trunk
        SSL_EXT_TRUNK:
          NAME: vit                       # any name of ssl_ext's trunk registry
          PARAMS: {preset: small, patch_size: 16, img_size: 224, patch_drop: 0.15}
          MASK_STUDENT: true              # MSN: the trained network sees masked crops, the EMA teacher whole ones

VISSL's trunks have no notion of masking, so MSN's anchor masking is not possible with
them; this adapter brings it: in training mode the student masks every crop it encodes
(``trunk(x, mask=True)``, e.g. ViT patch drop), while the EMA teacher made by
``ssl_ext_task`` has masking switched off. (The student also encodes the crops only the
teacher's loss terms use; with ``STUDENT_VIEWS`` leaving them out, that costs compute,
not correctness.) ``out_feat_keys`` (VISSL's feature-extraction layer names) are passed
to the trunk's ``extract_layers``.
"""
from __future__ import annotations

from typing import Any, List, Optional

import torch
from torch import nn
from vissl.models.trunks import register_model_trunk

from registry import build_trunk

TRUNK_NAME = "ssl_ext_trunk"
CONFIG_KEY = "config.MODEL.TRUNK.SSL_EXT_TRUNK"
KNOWN_KEYS = ("NAME", "PARAMS", "MASK_STUDENT")


@register_model_trunk(TRUNK_NAME)
class SSLExtTrunk(nn.Module):
    """A VISSL trunk around an ssl_ext trunk; returns ``[features]`` as VISSL trunks do."""

    def __init__(self, model_config: Any, model_name: str = TRUNK_NAME) -> None:
        super().__init__()
        spec = dict(model_config.TRUNK.get("SSL_EXT_TRUNK") or {})
        unknown = sorted(set(spec) - set(KNOWN_KEYS))
        if unknown or not spec.get("NAME"):
            raise ValueError(
                f"{CONFIG_KEY} needs NAME (an ssl_ext trunk) with optional PARAMS and MASK_STUDENT"
                + (f"; unknown keys {unknown}" if unknown else "; NAME is missing") + "."
            )
        self.trunk = build_trunk({"NAME": spec["NAME"], "PARAMS": dict(spec.get("PARAMS") or {})})
        self.mask_student = bool(spec.get("MASK_STUDENT", False))
        if self.mask_student and not getattr(self.trunk, "supports_masking", False):
            raise ValueError(f"{CONFIG_KEY}.MASK_STUDENT: the ssl_ext trunk {spec['NAME']!r} does not support masking.")
        self.masking_enabled = self.mask_student  # the EMA teacher's copy sets this to False

    @property
    def out_dim(self) -> int:
        return self.trunk.out_dim

    def forward(self, x: torch.Tensor, out_feat_keys: Optional[List[str]] = None) -> List[torch.Tensor]:
        if out_feat_keys:
            layers = self.trunk.extract_layers(x, list(out_feat_keys))
            return [layers[name] for name in out_feat_keys]
        if getattr(self.trunk, "supports_masking", False):
            return [self.trunk(x, mask=self.masking_enabled and self.training)]
        return [self.trunk(x)]


def disable_masking(model: nn.Module) -> None:
    """Switch masking off in every ssl_ext trunk of ``model`` (the EMA teacher encodes whole crops)."""
    for module in model.modules():
        if isinstance(module, SSLExtTrunk):
            module.masking_enabled = False
