"""Frozen-trunk feature extraction, sharded across ranks and merged in dataset order.

Sharding is by whole batches: the dataset is cut into batches of
``DATA.VAL.BATCHSIZE_PER_REPLICA`` in index order and each rank takes a
contiguous run of them. Every batch therefore holds the same images as in a
single-process run, so (with the trunk in eval mode) the merged features are
bit-identical to a single-process extraction, whatever the world size.
Ranks exchange their rows with an all-gather (padded to the longest shard).

Both splits use ``DATA.VAL.TRANSFORM`` (the deterministic evaluation
transform): a benchmark config's ``DATA.TRAIN.TRANSFORM`` holds the training
augmentations of the protocol linear eval, which must not leak into cached
features.
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

import registry
from ssl_ext.benchmarks import feature_store
from ssl_ext.utils import distributed as du

logger = logging.getLogger(__name__)


def device_for(cfg: DictConfig) -> torch.device:
    """``MACHINE.DEVICE`` (auto = this process's CUDA device when available)."""
    wanted = str(cfg.config.MACHINE.DEVICE)
    if wanted == "cpu" or (wanted == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("config.MACHINE.DEVICE=cuda but no CUDA device is available: set config.MACHINE.DEVICE=cpu")
    return torch.device("cuda", torch.cuda.current_device())


def build_frozen_trunk(cfg: DictConfig, device: Optional[torch.device] = None) -> nn.Module:
    """The trunk of ``MODEL.TRUNK`` with ``MODEL.WEIGHTS_INIT`` loaded, in eval mode, without gradients."""
    from ssl_ext.models.build import build_trunk
    from ssl_ext.engine.weights import load_weights_init

    # Seeded from SEED_VALUE alone, so a random initialisation is the same on every rank and in every run.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(cfg.config.SEED_VALUE))
        trunk = build_trunk(cfg)
    loaded = load_weights_init(trunk, cfg.config.MODEL.WEIGHTS_INIT)
    if not loaded and list(trunk.parameters()):
        why = "RANDOM_INIT is true" if bool(cfg.config.MODEL.WEIGHTS_INIT.get("RANDOM_INIT", False)) else "PARAMS_FILE is empty"
        logger.warning("config.MODEL.WEIGHTS_INIT.%s: evaluating a randomly initialised trunk (seed %d).", why, int(cfg.config.SEED_VALUE))
    trunk.eval()
    for p in trunk.parameters():
        p.requires_grad_(False)
    return trunk.to(device or device_for(cfg))


LAYER_JOIN = "+"


def evaluation_layers(cfg: DictConfig, trunk: nn.Module) -> List[str]:
    """``BENCHMARK.FEATURES.LAYERS``, or the trunk's last layer (its pooled output).

    An entry may join layer names with ``+`` to concatenate them, e.g. DINO's
    ViT linear-eval input ``cls_last4+avgpool_last1`` (class tokens of the last
    four blocks and the average-pooled patches of the last one).
    """
    layers = [str(x) for x in cfg.config.BENCHMARK.FEATURES.LAYERS]
    valid = list(getattr(trunk, "layer_names", []))
    if not valid:
        raise ValueError(f"Trunk {type(trunk).__name__} exposes no layer_names; it cannot be used for evaluation.")
    if not layers:
        return [valid[-1]]
    unknown = sorted({part for x in layers for part in x.split(LAYER_JOIN) if part not in valid})
    if unknown:
        raise ValueError(
            f"config.BENCHMARK.FEATURES.LAYERS: unknown layer(s) {unknown} for this trunk; valid: {valid} "
            f"(join names with '{LAYER_JOIN}' to concatenate them)"
        )
    return layers


def layer_features(trunk: nn.Module, images: torch.Tensor, layers: List[str]) -> Dict[str, torch.Tensor]:
    """``{layer: (N, D)}`` for every evaluated layer, composite ``a+b`` layers concatenated in order."""
    parts = list(dict.fromkeys(part for layer in layers for part in layer.split(LAYER_JOIN)))
    base = trunk.extract_layers(images, parts)
    return {layer: torch.cat([base[p] for p in layer.split(LAYER_JOIN)], dim=1) for layer in layers}


def single_view_dataset(cfg: DictConfig, split: str, transform_split: str, augmented: bool = False) -> Dataset:
    """Data of ``DATA.<split>`` with the transform of ``DATA.<transform_split>``; items ``([view], label, index)``.

    ``augmented=True`` uses the core's ``ViewsDataset``, which seeds every item's
    random augmentation; evaluation transforms are deterministic and skip that cost.
    """
    from ssl_ext.data.build import build_raw_dataset
    from ssl_ext.data.views import ViewsDataset

    spec = cfg.config.DATA[transform_split].TRANSFORM
    transform = _FirstViewOnly(
        registry.build_transform(OmegaConf.to_container(spec, resolve=True)), f"config.DATA.{transform_split}.TRANSFORM"
    )
    base = build_raw_dataset(cfg, split)
    if augmented:
        return ViewsDataset(base, transform, seed=int(cfg.config.SEED_VALUE))
    return _DeterministicViews(base, transform)


class _DeterministicViews(Dataset):
    def __init__(self, base: Dataset, transform: Callable) -> None:
        self.base, self.transform = base, transform
        self.targets = list(getattr(base, "targets", []))
        self.num_classes = getattr(base, "num_classes", None)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        image, label = self.base[index]
        return self.transform(image), int(label), int(index)


class _FirstViewOnly:
    """Rejects transforms that return several views: one feature row per image is expected."""

    def __init__(self, transform: Callable, key: str) -> None:
        self.transform, self.key = transform, key

    def __call__(self, image):
        views = self.transform(image)
        if len(views) != 1:
            raise ValueError(
                f"{self.key} returns {len(views)} views; evaluation needs a single-view transform (e.g. eval_resize)."
            )
        return views


def shard_bounds(num_items: int, batch_size: int, rank: int, world_size: int) -> Tuple[int, int]:
    """Item range ``[start, end)`` of ``rank``: a contiguous run of whole batches."""
    num_batches = -(-num_items // batch_size)
    first = rank * num_batches // world_size
    last = (rank + 1) * num_batches // world_size
    return min(first * batch_size, num_items), min(last * batch_size, num_items)


def gather_rows(local: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's rows in rank order (shards may differ in length)."""
    if not du.is_distributed() or du.get_world_size() == 1:
        return local
    sizes = du.all_gather_object(int(local.shape[0]))
    padded = local.new_zeros((max(sizes),) + tuple(local.shape[1:]))
    padded[: local.shape[0]] = local
    gathered = du.all_gather_no_grad(padded)
    parts = gathered.split(max(sizes))
    return torch.cat([part[:size] for part, size in zip(parts, sizes)])


BatchFn = Callable[[torch.Tensor], Dict[str, torch.Tensor]]


@torch.no_grad()
def run_sharded(cfg: DictConfig, dataset: Dataset, batch_fn: BatchFn, device: torch.device) -> Dict[str, torch.Tensor]:
    """Apply ``batch_fn`` (images -> named (N, D) tensors) to this rank's shard; gather all ranks in index order.

    Returns the named outputs plus ``"labels"`` and ``"ids"``, on every rank, on CPU.
    """
    from ssl_ext.data.views import collate_views

    batch_size = int(cfg.config.DATA.VAL.BATCHSIZE_PER_REPLICA)
    start, end = shard_bounds(len(dataset), batch_size, du.get_rank(), du.get_world_size())
    workers = int(cfg.config.DATA.NUM_DATALOADER_WORKERS)
    loader = DataLoader(
        Subset(dataset, range(start, end)), batch_size=batch_size, shuffle=False, drop_last=False,
        num_workers=workers, collate_fn=collate_views, pin_memory=device.type == "cuda",
    )
    chunks: Dict[str, List[torch.Tensor]] = {}
    for batch in loader:
        outputs = batch_fn(batch["views"][0].to(device, non_blocking=True))
        outputs = {**{k: v.float() for k, v in outputs.items()}, "labels": batch["label"], "ids": batch["index"]}
        for name, value in outputs.items():
            chunks.setdefault(name, []).append(value.to(device))
    if not chunks:  # an empty shard (more ranks than batches): still take part in the gathers
        probe = batch_fn(dataset[0][0][0].unsqueeze(0).to(device))
        chunks = {k: [v.float().new_zeros((0,) + tuple(v.shape[1:]))] for k, v in probe.items()}
        chunks.update(labels=[torch.zeros(0, dtype=torch.long, device=device)], ids=[torch.zeros(0, dtype=torch.long, device=device)])
    merged = {}
    for name in sorted(chunks):  # same order on every rank, so the collective calls pair up
        merged[name] = gather_rows(torch.cat(chunks[name])).cpu()
    return merged


def extract_split(cfg: DictConfig, trunk: nn.Module, split: str, layers: List[str], device: torch.device):
    """Features of every layer for ``DATA.<split>`` (dict layer -> FeatureSet, on every rank) and the dataset."""
    dataset = single_view_dataset(cfg, split, transform_split="VAL")
    merged = run_sharded(cfg, dataset, lambda images: layer_features(trunk, images, layers), device)
    labels, ids = merged["labels"].numpy(), merged["ids"].numpy()
    return {
        layer: feature_store.FeatureSet(features=merged[layer].numpy(), labels=labels, ids=ids) for layer in layers
    }, dataset


def train_class_groups(dataset: Dataset, cfg: DictConfig) -> Optional[Dict[str, List[int]]]:
    """The long-tail subset's own head/medium/tail groups, when the train data is one."""
    base = getattr(dataset, "base", dataset)
    groups_fn = getattr(base, "class_groups", None)
    if groups_fn is None:
        return None
    from ssl_ext.data.long_tail import group_thresholds

    groups = groups_fn(*group_thresholds(cfg.config.DATA.TRAIN))
    return {name: [int(c) for c in groups[name]] for name in ("head", "medium", "tail")}


def extract_features(cfg: DictConfig) -> Dict[str, object]:
    """Extract and save every split and layer; return a summary (the same on every rank)."""
    started = time.time()
    device = device_for(cfg)
    trunk = build_frozen_trunk(cfg, device)
    layers = evaluation_layers(cfg, trunk)
    splits = [str(s).upper() for s in cfg.config.BENCHMARK.FEATURES.SPLITS]
    root = feature_store.features_dir(cfg)
    meta: Dict[str, object] = {
        "fingerprint": feature_store.features_fingerprint(cfg, layers, splits),
        "layers": layers,
        "splits": [s.lower() for s in splits],
        "trunk": OmegaConf.to_container(cfg.config.MODEL.TRUNK, resolve=True),
        "weights_init": OmegaConf.to_container(cfg.config.MODEL.WEIGHTS_INIT, resolve=True),
        "num_rows": {},
        "dims": {},
    }
    num_classes = 0
    for split in splits:
        sets, dataset = extract_split(cfg, trunk, split, layers, device)
        num_classes = max(num_classes, int(getattr(dataset, "num_classes", 0) or 0))
        if split == "TRAIN":
            meta["class_groups"] = train_class_groups(dataset, cfg)
        if du.is_primary():
            for layer, data in sets.items():
                if not np.array_equal(data.ids, np.arange(len(dataset))):
                    raise RuntimeError(f"Feature extraction of {split} lost or reordered rows; please report this bug.")
                feature_store.save_feature_set(root, split, layer, data)
        meta["num_rows"][split.lower()] = len(dataset)
        meta["dims"] = {layer: int(data.features.shape[1]) for layer, data in sets.items()}
    meta["num_classes"] = num_classes
    meta["seconds"] = round(time.time() - started, 3)
    if du.is_primary():
        feature_store.save_meta(root, meta)
    du.barrier()
    logger.info("Saved features of %s (layers %s) to %s in %.1fs", splits, layers, root, meta["seconds"])
    return {"features_dir": root, **meta}


def ensure_features(cfg: DictConfig) -> Dict[str, object]:
    """Reuse cached features whose meta matches this config (``BENCHMARK.FEATURES.REUSE``), else extract them.

    Must be called by every rank (extraction is collective).
    """
    root = feature_store.features_dir(cfg)
    meta = feature_store.load_meta(root) if bool(cfg.config.BENCHMARK.FEATURES.REUSE) else None
    if meta is not None:
        from ssl_ext.models.build import build_trunk

        with torch.random.fork_rng(devices=[]):  # only the layer names are needed; leave the caller's RNG alone
            layers = evaluation_layers(cfg, build_trunk(cfg))
        splits = [str(s).upper() for s in cfg.config.BENCHMARK.FEATURES.SPLITS]
        if meta.get("fingerprint") == feature_store.features_fingerprint(cfg, layers, splits):
            logger.info("Reusing cached features in %s", root)
            return {"features_dir": root, "reused": True, **meta}
        logger.info("Cached features in %s were made with another config; extracting again.", root)
    return {"reused": False, **extract_features(cfg)}
