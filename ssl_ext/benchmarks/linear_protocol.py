"""VISSL's linear-evaluation protocol: frozen trunk, BatchNorm + linear head per layer, SGD.

As in VISSL's ``linear_image_classification`` benchmarks (Goyal et al. 2019,
"Scaling and Benchmarking Self-Supervised Visual Representation Learning",
arXiv:1905.01235): the trunk stays frozen in eval mode, every evaluated layer
gets its own head (BatchNorm, VISSL's ``eval_mlp``, then a linear classifier
initialised from N(0, 0.01^2)), and the heads are trained together with the
cross-entropy of each, on images augmented by ``DATA.TRAIN.TRANSFORM`` (each
benchmark config sets its own augmentations). The optimizer, learning rate
(``BASE_LR`` scaled by global batch / ``BASE_LR_BATCH_SIZE``, VISSL's
auto-scaling), step or cosine schedule, weight decay and epochs come from
``OPTIMIZER``. Top-1/top-5 on ``DATA.VAL`` are measured every
``BENCHMARK.LINEAR.PROTOCOL.EVAL_FREQUENCY`` epochs and after the last; the
reported numbers are those of the last epoch (the best epoch is kept too).

Distributed: each rank trains on its ``DistributedSampler`` shard and DDP
averages the heads' gradients; validation uses the same whole-batch sharding
as feature extraction.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Dict, List

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from ssl_ext.benchmarks.extraction import (
    build_frozen_trunk,
    device_for,
    evaluation_layers,
    layer_features,
    run_sharded,
    single_view_dataset,
    train_class_groups,
)
from ssl_ext.benchmarks.linear_fast import INIT_STD
from ssl_ext.benchmarks.metrics import class_groups_for, classification_metrics
from ssl_ext.utils import distributed as du

logger = logging.getLogger(__name__)


class BatchNormLinearHead(nn.Module):
    """BatchNorm (optional) then a linear classifier, on (N, D) features.

    The BatchNorm keeps a cumulative average of the batch statistics
    (``momentum=None``) instead of VISSL's exponential one (0.1): the trunk is
    frozen, so its features are stationary and the plain average is the better
    estimate; with few steps the exponential average is still dominated by its
    initial values (mean 0, variance 1) and evaluation breaks.
    """

    def __init__(self, in_dim: int, num_classes: int, batchnorm: bool = True) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(in_dim, momentum=None) if batchnorm else nn.Identity()
        self.linear = nn.Linear(in_dim, num_classes)
        nn.init.normal_(self.linear.weight, std=INIT_STD)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(x))


class LinearHeads(nn.Module):
    """One head per evaluated layer; ``forward`` maps {layer: features} to {layer: logits} (one module for DDP)."""

    def __init__(self, dims: Dict[str, int], num_classes: int, batchnorm: bool) -> None:
        super().__init__()
        self.heads = nn.ModuleDict({layer: BatchNormLinearHead(dim, num_classes, batchnorm) for layer, dim in dims.items()})

    def forward(self, features: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return {layer: self.heads[layer](x) for layer, x in features.items()}


def _layer_dims(trunk: nn.Module, layers: List[str], probe: torch.Tensor) -> Dict[str, int]:
    with torch.no_grad():
        return {name: int(v.shape[1]) for name, v in layer_features(trunk, probe, layers).items()}


def _num_classes(dataset) -> int:
    declared = int(getattr(dataset, "num_classes", 0) or 0)
    targets = list(getattr(dataset, "targets", []) or [])
    return max(declared, (max(targets) + 1) if targets else 0)


def _train_epoch(trunk, heads, trained, layers, loader, optimizer, device, step, total_steps, lr_at, wd_at) -> float:
    """One pass over the train loader; returns the last step's loss. ``trained`` is ``heads`` or its DDP wrapper."""
    heads.train()
    loss = torch.zeros(())
    for batch in loader:
        where = step / total_steps
        for group in optimizer.param_groups:
            group["lr"] = lr_at(where)
            group["weight_decay"] = wd_at(where) if group.get("apply_weight_decay", True) else 0.0
        images = batch["views"][0].to(device, non_blocking=True)
        labels = batch["label"].to(device, non_blocking=True)
        with torch.no_grad():
            features = layer_features(trunk, images, layers)
        logits = trained(features)
        loss = sum(F.cross_entropy(logits[layer], labels) for layer in layers)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
    return float(loss.detach())


def _evaluate(cfg, trunk, heads, layers, val_set, groups, device) -> Dict[str, Dict[str, float]]:
    heads.eval()
    scores = run_sharded(cfg, val_set, lambda images: heads(layer_features(trunk, images, layers)), device)
    return {layer: classification_metrics(scores[layer], scores["labels"], groups) for layer in layers}


def run_protocol(cfg: DictConfig) -> Dict[str, Any]:
    """Train and evaluate the heads; return rows (last epoch) and the per-epoch history (same on every rank)."""
    from ssl_ext.data.views import collate_views
    from ssl_ext.engine.optimizers.param_groups import build_optimizer
    from ssl_ext.engine.schedules import lr_schedule, wd_schedule

    started = time.time()
    c = cfg.config
    device = device_for(cfg)
    trunk = build_frozen_trunk(cfg, device)
    layers = evaluation_layers(cfg, trunk)
    train_set = single_view_dataset(cfg, "TRAIN", transform_split="TRAIN", augmented=True)
    val_set = single_view_dataset(cfg, "VAL", transform_split="VAL")
    num_classes = max(_num_classes(train_set), _num_classes(val_set))
    probe = val_set[0][0][0].unsqueeze(0).to(device)
    dims = _layer_dims(trunk, layers, probe)
    batchnorm = bool(c.BENCHMARK.LINEAR.PROTOCOL.BATCHNORM)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(c.SEED_VALUE))
        heads = LinearHeads({layer: dims[layer] for layer in layers}, num_classes, batchnorm)
    heads = heads.to(device)
    trained = heads
    if du.is_distributed() and du.get_world_size() > 1:
        trained = nn.parallel.DistributedDataParallel(heads, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = build_optimizer(cfg, {"heads": heads})

    batch_size = int(c.DATA.TRAIN.BATCHSIZE_PER_REPLICA)
    sampler = DistributedSampler(
        train_set, num_replicas=du.get_world_size(), rank=du.get_rank(), shuffle=True, seed=int(c.SEED_VALUE)
    )
    workers = int(c.DATA.NUM_DATALOADER_WORKERS)
    loader = DataLoader(
        train_set, batch_size=batch_size, sampler=sampler, drop_last=bool(c.DATA.TRAIN.DROP_LAST),
        num_workers=workers, collate_fn=collate_views, pin_memory=device.type == "cuda",
    )
    epochs = int(c.OPTIMIZER.NUM_EPOCHS)
    if epochs < 1 or len(loader) == 0:
        raise ValueError(
            f"linear_eval (protocol): config.OPTIMIZER.NUM_EPOCHS={epochs} and {len(loader)} batches per epoch; "
            f"both must be positive (lower DATA.TRAIN.BATCHSIZE_PER_REPLICA or set DATA.TRAIN.DROP_LAST=false)."
        )
    peak_lr = float(c.OPTIMIZER.BASE_LR) * batch_size * du.get_world_size() / float(c.OPTIMIZER.BASE_LR_BATCH_SIZE)
    lr_at, wd_at = lr_schedule(c.OPTIMIZER, peak_lr, epochs), wd_schedule(c.OPTIMIZER)
    groups = class_groups_for(cfg, train_set.targets, num_classes, known=train_class_groups(train_set, cfg))
    eval_every = max(1, int(c.BENCHMARK.LINEAR.PROTOCOL.EVAL_FREQUENCY))
    total_steps, step = epochs * len(loader), 0
    history: List[Dict[str, Any]] = []

    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        loss = _train_epoch(trunk, heads, trained, layers, loader, optimizer, device, step, total_steps, lr_at, wd_at)
        step += len(loader)
        if (epoch + 1) % eval_every == 0 or epoch + 1 == epochs:
            metrics = _evaluate(cfg, trunk, heads, layers, val_set, groups, device)
            history.append({"epoch": epoch + 1, "loss": loss, "metrics": metrics})
            logger.info(
                "linear_eval (protocol) epoch %d/%d: %s", epoch + 1, epochs,
                ", ".join(f"{layer} top-1 {m['top1']:.2f}%" for layer, m in metrics.items()),
            )
    final = history[-1]["metrics"]
    best = {layer: max(h["metrics"][layer]["top1"] for h in history) for layer in layers}
    seconds = round(time.time() - started, 3)
    rows = [
        {
            "layer": layer, "method": "linear (protocol)", **final[layer], "best_epoch_top1": best[layer],
            "epochs": epochs, "lr": peak_lr, "weight_decay": float(c.OPTIMIZER.WEIGHT_DECAY), "seconds": seconds,
        }
        for layer in layers
    ]
    return {"mode": "protocol", "rows": rows, "history": history, "num_classes": num_classes}
