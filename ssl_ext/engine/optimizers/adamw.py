from typing import Iterable, Sequence

import torch

from registry import register_optimizer


@register_optimizer("adamw")
def adamw(params: Iterable, betas: Sequence[float] = (0.9, 0.999), eps: float = 1e-8) -> torch.optim.Optimizer:
    """AdamW (Loshchilov & Hutter, arXiv:1711.05101), the optimizer of MSN/DINO ViTs."""
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"adamw: betas must be two numbers in [0, 1), got {list(betas)}")
    return torch.optim.AdamW(params, lr=0.0, betas=tuple(betas), eps=eps)
