"""LARS: layer-wise adaptive rate scaling (You et al., arXiv:1708.03888), as used by SimCLR/BYOL/VICReg."""
from typing import Iterable

import torch

from registry import register_optimizer


class LARS(torch.optim.Optimizer):
    """SGD with momentum whose per-tensor step is scaled by ``eta * ||w|| / ||g + wd * w||``.

    Groups with ``lars_exclude=True`` (biases, norms: the trainer's no-decay
    groups) take plain SGD steps, the common practice of SimCLR and BYOL.
    """

    def __init__(self, params, lr: float = 0.0, momentum: float = 0.9, eta: float = 0.001, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, eta=eta, weight_decay=weight_decay, lars_exclude=False))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                update = p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad.clone()
                if not group["lars_exclude"]:
                    w_norm, u_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(update)
                    trust = torch.where((w_norm > 0) & (u_norm > 0), group["eta"] * w_norm / u_norm, torch.ones_like(w_norm))
                    update = update * trust
                buf = self.state[p].get("momentum_buffer")
                if buf is None:
                    buf = self.state[p]["momentum_buffer"] = update.clone()
                else:
                    buf.mul_(group["momentum"]).add_(update)
                p.add_(buf, alpha=-group["lr"])
        return loss


@register_optimizer("lars")
def lars(params: Iterable, momentum: float = 0.9, eta: float = 0.001) -> torch.optim.Optimizer:
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"lars: momentum must be in [0, 1), got {momentum}")
    if eta <= 0:
        raise ValueError(f"lars: eta must be > 0, got {eta}")
    groups = list(params)
    for g in groups:
        if isinstance(g, dict):
            g.setdefault("lars_exclude", not g.get("apply_weight_decay", True))
    return LARS(groups, momentum=momentum, eta=eta)
