"""Fast linear evaluation: a grid of linear classifiers trained at once on cached features.

DINOv2 (Oquab et al. 2023, arXiv:2304.07193) trains many linear heads with
different learning rates side by side over one pass of the frozen features and
reports the best one on val. Here the features are cached, so one epoch costs a
few matrix products: the heads are one weight tensor ``(G, D, C)`` (G = number of
learning-rate x weight-decay pairs), the loss is the sum of the heads' mean
cross-entropies (the heads share no parameter, so each receives exactly its own
gradient), and the update is SGD with momentum with a per-head learning rate
and weight decay, written out so all heads step in one tensor operation. The
update rule matches ``torch.optim.SGD`` (weight decay added to the gradient,
dampening 0, optional Nesterov).

Choices: weights start from N(0, 0.01^2) and biases at 0 (VISSL's linear head
initialisation); the learning-rate schedule has the shape of
``OPTIMIZER.LR_SCHEDULE`` scaled to each head's rate; biases get weight decay
only with ``OPTIMIZER.REGULARIZE_BIAS``. ``FEATURE_NORM`` mirrors the BatchNorm of
VISSL's protocol head on cached features: ``batchnorm`` standardizes with the
train mean and standard deviation (BatchNorm's statistics, computed once instead
of per batch) and learns BatchNorm's per-feature scale and shift per head (weight
decay on them only with ``OPTIMIZER.REGULARIZE_NORM``); ``standardize`` keeps only
the fixed standardization; ``none`` feeds raw features (DINOv2's plain linear
layer). With ``batchnorm`` the two modes train the same model and agree closely.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

INIT_STD = 0.01
# Below this many multiply-adds per step, one CPU thread is faster: the step is a few dozen tiny
# ops, and a second OpenMP thread only adds synchronisation (100x slower when the cores are busy).
SINGLE_THREAD_STEP_MACS = 2**24


@contextlib.contextmanager
def _threads_for_step_size(macs: int, device: torch.device):
    if device.type != "cpu" or macs > SINGLE_THREAD_STEP_MACS or torch.get_num_threads() == 1:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class LinearGrid:
    """Trained heads: ``weight`` (G, D, C), ``bias`` (G, C), the (lr, wd) pair of each head and,
    with a learned feature affine, per-head ``scale`` and ``shift`` (G, D) applied before the weights."""

    weight: torch.Tensor
    bias: torch.Tensor
    settings: List[Tuple[float, float]]
    scale: Optional[torch.Tensor] = None
    shift: Optional[torch.Tensor] = None

    def scores(self, features: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
        """Logits of every head, (G, N, C)."""
        out = []
        for start in range(0, features.shape[0], chunk):
            x = features[start : start + chunk].to(self.weight.device, self.weight.dtype)
            out.append(_logits(x, self.weight, self.bias, self.scale, self.shift))
        return torch.cat(out, dim=1)


def _logits(x, weight, bias, scale, shift) -> torch.Tensor:
    inputs = x.expand(weight.shape[0], -1, -1)
    if scale is not None:
        inputs = torch.addcmul(shift.unsqueeze(1), inputs, scale.unsqueeze(1))
    return torch.baddbmm(bias.unsqueeze(1), inputs, weight)


def standardize(train: torch.Tensor, *others: torch.Tensor, eps: float = 1e-5) -> List[torch.Tensor]:
    """Subtract the train mean and divide by the train standard deviation (BatchNorm's eval-time map)."""
    mean = train.mean(dim=0, keepdim=True)
    std = (train.var(dim=0, unbiased=False, keepdim=True) + eps).sqrt()
    return [(t - mean) / std for t in (train, *others)]


def train_linear_grid(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    learning_rates: Sequence[float],
    weight_decays: Sequence[float],
    epochs: int,
    batch_size: int,
    momentum: float = 0.9,
    nesterov: bool = False,
    lr_factor: Callable[[float], float] = lambda where: 1.0,
    regularize_bias: bool = False,
    learn_affine: bool = False,
    regularize_affine: bool = False,
    seed: int = 0,
    device: torch.device = torch.device("cpu"),
) -> LinearGrid:
    """Train one linear head per (lr, wd) pair on ``features`` (N, D) with mini-batch SGD.

    ``lr_factor(where)`` scales every head's rate at training progress ``where`` in [0, 1).
    ``learn_affine`` adds a per-head, per-feature scale (from 1) and shift (from 0) before
    the weights: the learnable part of the protocol head's BatchNorm.
    """
    if not learning_rates or not weight_decays:
        raise ValueError("config.BENCHMARK.LINEAR.FAST: LEARNING_RATES and WEIGHT_DECAYS must not be empty")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"fast linear eval needs epochs >= 1 and batch_size >= 1, got {epochs} and {batch_size}")
    settings = [(float(lr), float(wd)) for lr in learning_rates for wd in weight_decays]
    heads = len(settings)
    generator = torch.Generator().manual_seed(seed)
    x_all = features.to(device, torch.float32)
    y_all = labels.to(device, torch.long)
    n, dim = x_all.shape
    weight = (torch.randn(heads, dim, num_classes, generator=generator) * INIT_STD).to(device).requires_grad_(True)
    bias = torch.zeros(heads, num_classes, device=device, requires_grad=True)
    params = {"weight": (weight, True), "bias": (bias, regularize_bias)}
    scale = shift = None
    if learn_affine:
        scale = torch.ones(heads, dim, device=device, requires_grad=True)
        shift = torch.zeros(heads, dim, device=device, requires_grad=True)
        params.update(scale=(scale, regularize_affine), shift=(shift, regularize_affine))
    lrs = torch.tensor([s[0] for s in settings], device=device)
    wds = torch.tensor([s[1] for s in settings], device=device)
    loop = _SGDLoop(epochs, batch_size, momentum, nesterov, lr_factor, num_classes, generator)
    with _threads_for_step_size(heads * min(batch_size, n) * dim * num_classes, torch.device(device)):
        loop.run(x_all, y_all, params, lrs, wds)
    detached = [t.detach() if t is not None else None for t in (weight, bias, scale, shift)]
    return LinearGrid(detached[0], detached[1], settings, detached[2], detached[3])


@dataclass
class _SGDLoop:
    """Mini-batch SGD of every head at once: torch.optim.SGD's update with a per-head lr and weight decay."""

    epochs: int
    batch_size: int
    momentum: float
    nesterov: bool
    lr_factor: Callable[[float], float]
    num_classes: int
    generator: torch.Generator

    def run(self, x_all, y_all, params, lrs, wds) -> None:
        """``params``: name -> (tensor, decays?) for weight, bias and (optionally) scale, shift; updated in place."""
        n = x_all.shape[0]
        heads = lrs.shape[0]
        tensors = {name: p for name, (p, _) in params.items()}
        buffers: Dict[str, torch.Tensor] = {}
        total_steps = self.epochs * math.ceil(n / self.batch_size)
        step = 0
        for _ in range(self.epochs):
            order = torch.randperm(n, generator=self.generator).to(x_all.device)
            for start in range(0, n, self.batch_size):
                index = order[start : start + self.batch_size]
                x, y = x_all[index], y_all[index]
                logits = _logits(x, tensors["weight"], tensors["bias"], tensors.get("scale"), tensors.get("shift"))
                loss = F.cross_entropy(logits.reshape(-1, self.num_classes), y.repeat(heads), reduction="sum") / x.shape[0]
                grads = torch.autograd.grad(loss, list(tensors.values()))
                rate = lrs * self.lr_factor(step / total_steps)
                with torch.no_grad():
                    for (name, (param, decays)), grad in zip(params.items(), grads):
                        shape = (heads,) + (1,) * (param.dim() - 1)
                        if decays:
                            grad = grad + wds.view(shape) * param
                        if self.momentum > 0:
                            buf = buffers.get(name)
                            buf = grad.clone() if buf is None else buf.mul_(self.momentum).add_(grad)
                            buffers[name] = buf
                            grad = grad + self.momentum * buf if self.nesterov else buf
                        param.sub_(rate.view(shape) * grad)
                step += 1


def top1_per_head(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Top-1 accuracy (percent) of each head from (G, N, C) scores."""
    return 100.0 * (scores.argmax(dim=2) == labels.to(scores.device).view(1, -1)).float().mean(dim=1)
