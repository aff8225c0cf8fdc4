"""Base class of ssl_ext losses: Classy Vision's ClassyLoss with keyword ``from_config``."""
from __future__ import annotations

from typing import Any, Dict, Mapping, Union

import torch
from classy_vision.losses import ClassyLoss


class SSLLoss(ClassyLoss):
    """A self-supervised loss.

    ``forward(output: ModelOutput, batch: dict)`` returns a scalar tensor, or a dict
    of scalar tensors whose ``"loss"`` entry is optimized and whose other entries
    (named terms such as ``"me_max"``) are logged.
    """

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "SSLLoss":
        config = {k: v for k, v in dict(config).items() if k not in ("name", "NAME")}
        return cls(**config)

    def forward(self, output, batch) -> Union[torch.Tensor, Dict[str, torch.Tensor]]:  # pragma: no cover - abstract
        raise NotImplementedError
