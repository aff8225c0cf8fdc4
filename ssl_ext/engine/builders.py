"""Config -> components. The one place that reads config sections and calls ``registry.build_*``."""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler

import registry
from ssl_ext.engine.model import SSLModel
from ssl_ext.utils.rng import derive_seed

logger = logging.getLogger(__name__)


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


class ViewsDataset(Dataset):
    """Applies a views transform to a labelled dataset: item -> (views, label, index).

    The augmentation of an item is seeded by (seed, epoch, index), not by the
    process's RNG stream, so it does not depend on the number of data-loader
    workers, on the rank that loads it, or on where a run was resumed.
    """

    def __init__(self, base: Dataset, transform, seed: int = 0):
        self.base, self.transform, self.seed, self.epoch = base, transform, int(seed), 0
        self.targets = list(getattr(base, "targets", []))
        self.num_classes = getattr(base, "num_classes", None)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        image, label = self.base[index]
        if self.transform is None:
            return [image], int(label), int(index)
        item_seed = int(np.random.SeedSequence([self.seed, self.epoch, int(index)]).generate_state(1)[0])
        with torch.random.fork_rng(devices=[]):
            # Only the CPU generator: torch.manual_seed would also queue lazy CUDA seeding per item.
            torch.default_generator.manual_seed(item_seed)
            views = self.transform(image)
        return views, int(label), int(index)


def collate_views(items) -> Dict[str, Any]:
    views, labels, indices = zip(*items)
    return {
        "views": [torch.stack(per_view) for per_view in zip(*views)],
        "label": torch.tensor(labels, dtype=torch.long),
        "index": torch.tensor(indices, dtype=torch.long),
    }


class _Concat(ConcatDataset):
    def __init__(self, datasets):
        super().__init__(datasets)
        self.targets = [t for d in datasets for t in getattr(d, "targets", [])]
        self.num_classes = max(getattr(d, "num_classes", 0) or 0 for d in datasets)


def build_raw_dataset(cfg: DictConfig, split: str = "TRAIN") -> Dataset:
    """Data sources of ``DATA.<split>`` (concatenated), long-tailed when ``LONG_TAIL.ENABLED``; no transform."""
    data = cfg.config.DATA
    split_cfg = data[split]
    from ssl_ext.data.catalog import add_catalog_file

    add_catalog_file(str(data.DATASET_CATALOG or ""))
    sources = list(split_cfg.DATA_SOURCES)
    names = list(split_cfg.get("DATASET_NAMES", [])) or [""] * len(sources)
    paths = list(split_cfg.get("DATA_PATHS", [])) or [""] * len(sources)
    if len(names) not in (1, len(sources)) or len(paths) not in (1, len(sources)):
        from ssl_ext.config import ConfigError

        raise ConfigError(
            f"config.DATA.{split}: DATA_SOURCES has {len(sources)} entries but DATASET_NAMES has {len(names)} "
            f"and DATA_PATHS {len(paths)}; give one per source."
        )
    names = names * len(sources) if len(names) == 1 else names
    paths = paths * len(sources) if len(paths) == 1 else paths
    params = _plain(split_cfg.get("SOURCE_PARAMS", {})) or {}
    datasets = [
        registry.build_data_source(
            {"NAME": source, "PARAMS": params},
            split=split.lower(),
            data_path=str(path),
            dataset_name=str(name),
            skip_corrupt=bool(data.SKIP_CORRUPT),
        )
        for source, name, path in zip(sources, names, paths)
    ]
    dataset = datasets[0] if len(datasets) == 1 else _Concat(datasets)
    long_tail = split_cfg.get("LONG_TAIL")
    if long_tail is not None and long_tail.ENABLED:
        from ssl_ext.data.long_tail import long_tailed_from_config

        dataset = long_tailed_from_config(dataset, split_cfg)
    return dataset


def build_dataset(cfg: DictConfig, split: str = "TRAIN", transform: bool = True) -> ViewsDataset:
    """Raw dataset of ``DATA.<split>`` wrapped so items are ``(views, label, index)``."""
    base = build_raw_dataset(cfg, split)
    views_transform = registry.build_transform(_plain(cfg.config.DATA[split].TRANSFORM)) if transform else None
    return ViewsDataset(base, views_transform, seed=int(cfg.config.SEED_VALUE))


def build_loader(cfg: DictConfig, dataset: Dataset, split: str, rank: int, world_size: int, seed: int) -> Tuple[DataLoader, Sampler]:
    """Loader over the split's registered sampler.

    The sampler carries its own position (``state_dict``/``load_state_dict``, see
    ``ssl_ext.samplers.base``); the trainer saves it in every checkpoint, which is how a resumed run
    continues mid-epoch. The loader gets a generator of its own, so starting an epoch's iterator
    (which draws the workers' base seed) never touches the global RNG.
    """
    split_cfg = cfg.config.DATA[split]
    batch_size = int(split_cfg.BATCHSIZE_PER_REPLICA)
    sampler_spec = _plain(split_cfg.get("SAMPLER", {"NAME": "distributed_shuffle", "PARAMS": {}}))
    sampler = registry.build_sampler(
        sampler_spec, dataset=dataset, batch_size=batch_size, rank=rank, world_size=world_size, seed=seed,
        drop_last=bool(split_cfg.DROP_LAST),
    )
    for method in ("state_dict", "load_state_dict", "set_epoch"):
        if not callable(getattr(sampler, method, None)):
            raise TypeError(
                f"Sampler {sampler_spec.get('NAME')!r} ({type(sampler).__name__}) has no {method}(): every training sampler "
                "carries its resume position (see ssl_ext.samplers.base.ResumableSampler)."
            )
    loader_generator = torch.Generator()
    loader_generator.manual_seed(derive_seed(seed, rank, "data_loader"))
    workers = int(cfg.config.DATA.NUM_DATALOADER_WORKERS)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=bool(split_cfg.DROP_LAST),
        num_workers=workers,
        collate_fn=collate_views,
        pin_memory=torch.cuda.is_available(),
        # Workers are re-created every epoch so they see the dataset's new epoch (augmentation seeds).
        persistent_workers=False,
        generator=loader_generator,
    )
    return loader, sampler


def build_trunk(cfg: DictConfig) -> nn.Module:
    return registry.build_trunk(_plain(cfg.config.MODEL.TRUNK))


def _build_heads(specs: List[Any], in_dim: int) -> List[nn.Module]:
    heads = []
    for spec in specs:
        head = registry.build_head(_plain(spec), in_dim=in_dim)
        in_dim = head.out_dim
        heads.append(head)
    return heads


def build_model(cfg: DictConfig) -> SSLModel:
    trunk = build_trunk(cfg)
    heads = _build_heads(list(cfg.config.MODEL.HEADS), trunk.out_dim)
    width = heads[-1].out_dim if heads else trunk.out_dim
    student_heads = _build_heads(list(cfg.config.MODEL.get("STUDENT_ONLY_HEADS", [])), width)
    return SSLModel(trunk, heads, student_heads)


def build_loss(cfg: DictConfig) -> nn.Module:
    """The configured loss, plus ``LOSS.REGULARIZERS`` terms when listed."""
    from ssl_ext.losses.regularized import wrap_with_regularizers

    loss_cfg = cfg.config.LOSS
    base = registry.build_loss({"NAME": loss_cfg.NAME, "PARAMS": _plain(loss_cfg.PARAMS)})
    return wrap_with_regularizers(base, _plain(loss_cfg.get("REGULARIZERS", [])) or [])


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm))


def param_groups(modules: Dict[str, nn.Module], opt_cfg: DictConfig) -> List[Dict[str, Any]]:
    """Split parameters into weight-decay and no-weight-decay groups.

    Biases, normalization weights and prototypes get no weight decay unless
    ``REGULARIZE_BIAS`` / ``REGULARIZE_NORM`` / ``REGULARIZE_PROTOTYPES`` (as in MSN and DINO).
    Parameters whose name contains ``pos_embed``/``cls_token`` count as no-decay too.
    """
    decay, no_decay, seen = [], [], set()
    for prefix, root in modules.items():
        for module_name, module in root.named_modules():
            for name, p in module.named_parameters(recurse=False):
                if not p.requires_grad or id(p) in seen:
                    continue
                seen.add(id(p))
                full = f"{prefix}.{module_name}.{name}".strip(".")
                exempt = (
                    (name == "bias" and not opt_cfg.REGULARIZE_BIAS)
                    or (_is_norm(module) and not opt_cfg.REGULARIZE_NORM)
                    or ("prototypes" in full and not opt_cfg.REGULARIZE_PROTOTYPES)
                    or any(k in full for k in ("pos_embed", "cls_token", "mask_token"))
                )
                (no_decay if exempt else decay).append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "apply_weight_decay": True, "weight_decay": float(opt_cfg.WEIGHT_DECAY)})
    if no_decay:
        groups.append({"params": no_decay, "apply_weight_decay": False, "weight_decay": 0.0})
    return groups


def build_optimizer(cfg: DictConfig, modules: Dict[str, nn.Module]) -> torch.optim.Optimizer:
    opt_cfg = cfg.config.OPTIMIZER
    groups = param_groups(modules, opt_cfg)
    return registry.build_optimizer({"NAME": opt_cfg.NAME, "PARAMS": _plain(opt_cfg.PARAMS)}, params=groups)
