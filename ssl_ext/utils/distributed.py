"""Global-batch helpers shared by every loss.

The paper's statistics (p̄ in MSN/PMSN, SimCLR negatives, VICReg covariance,
MSBReg singular values, Sinkhorn marginals) are taken over the *global* batch.
``all_gather_with_grad`` and ``all_reduce_sum_with_grad`` keep gradients: each
rank computes the same global loss, the backward sums the gradient contributions
of all ranks, and DDP's gradient averaging then yields exactly the gradient of a
single process holding the whole batch.
"""
from __future__ import annotations

from typing import List

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_primary() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


class _AllGatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.local_size = get_rank(), tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.local_size
        return grad[start : start + ctx.local_size]


class _AllReduceSumWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone().contiguous()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone().contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (same shape on every rank) from all ranks along dim 0, keeping gradients."""
    if not is_distributed() or get_world_size() == 1:
        return tensor
    return _AllGatherWithGrad.apply(tensor)


def all_reduce_sum_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks, keeping gradients."""
    if not is_distributed() or get_world_size() == 1:
        return tensor
    return _AllReduceSumWithGrad.apply(tensor)


def all_reduce_mean_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Average ``tensor`` over ranks, keeping gradients (e.g. a mean over equal local batches)."""
    return all_reduce_sum_with_grad(tensor) / get_world_size()


@torch.no_grad()
def all_gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    if not is_distributed() or get_world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


@torch.no_grad()
def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """In-place-free sum over ranks without gradient (for metrics and Sinkhorn marginals)."""
    if not is_distributed() or get_world_size() == 1:
        return tensor
    out = tensor.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_reduce_max(value: float) -> float:
    """The largest ``value`` over all ranks (every rank gets it): how ranks agree on a stop."""
    if not is_distributed() or get_world_size() == 1:
        return float(value)
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    flag = torch.tensor([float(value)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return float(flag.item())


@torch.no_grad()
def broadcast_module_state(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers into ``module`` on every rank (in place)."""
    if not is_distributed() or get_world_size() == 1:
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=src)


def all_gather_object(obj) -> List:
    if not is_distributed():
        return [obj]
    out = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, src: int = 0):
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
