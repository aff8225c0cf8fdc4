from typing import Iterable

import torch

from registry import register_optimizer


@register_optimizer("sgd")
def sgd(params: Iterable, momentum: float = 0.9, nesterov: bool = False, dampening: float = 0.0) -> torch.optim.Optimizer:
    """SGD with momentum (lr and weight decay come from the schedules, per group)."""
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"sgd: momentum must be in [0, 1), got {momentum}")
    return torch.optim.SGD(params, lr=0.0, momentum=momentum, nesterov=nesterov, dampening=dampening)
