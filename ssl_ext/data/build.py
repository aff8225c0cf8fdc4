"""Config -> datasets and the training loader (``config.DATA.<split>``).

``build_raw_dataset`` builds the split's data sources (concatenated, long-tailed when
``LONG_TAIL.ENABLED``); ``build_dataset`` wraps them in their views transform
(:class:`ssl_ext.data.views.ViewsDataset`); ``build_loader`` puts the split's registered
sampler under a ``DataLoader``. Training and evaluation both build their data here.
"""
from __future__ import annotations

from typing import Tuple

import torch
from omegaconf import DictConfig
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler

import registry
from ssl_ext.data import batched
from ssl_ext.data.views import ViewsDataset, collate_views
from ssl_ext.utils.containers import plain
from ssl_ext.utils.rng import derive_seed


class ConcatSources(ConcatDataset):
    """Several data sources of one split as one dataset, with their ``targets`` and ``num_classes``."""

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
    params = plain(split_cfg.get("SOURCE_PARAMS", {})) or {}
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
    dataset = datasets[0] if len(datasets) == 1 else ConcatSources(datasets)
    long_tail = split_cfg.get("LONG_TAIL")
    if long_tail is not None and long_tail.ENABLED:
        from ssl_ext.data.long_tail import long_tailed_from_config

        dataset = long_tailed_from_config(dataset, split_cfg)
    return dataset


def build_dataset(cfg: DictConfig, split: str = "TRAIN", transform: bool = True) -> ViewsDataset:
    """Raw dataset of ``DATA.<split>`` wrapped so items are ``(views, label, index)``."""
    base = build_raw_dataset(cfg, split)
    if transform and _augment_on_device(cfg, split):
        # The loader only decodes; ssl_ext.data.batched makes the views of each batch on the training device.
        return ViewsDataset(batched.decode_to_tensors(base), batched.build_loader_transform(cfg), seed=int(cfg.config.SEED_VALUE))
    views_transform = registry.build_transform(plain(cfg.config.DATA[split].TRANSFORM)) if transform else None
    return ViewsDataset(base, views_transform, seed=int(cfg.config.SEED_VALUE))


def _augment_on_device(cfg: DictConfig, split: str) -> bool:
    return split == "TRAIN" and batched.augment_on(cfg) == "device"


def build_loader(cfg: DictConfig, dataset: Dataset, split: str, rank: int, world_size: int, seed: int) -> Tuple[DataLoader, Sampler]:
    """Loader over the split's registered sampler.

    The sampler carries its own position (``state_dict``/``load_state_dict``, part of the
    sampler contract that ``build_sampler`` checks, see ``ssl_ext.samplers.base``); the trainer
    saves it in every checkpoint, which is how a resumed run continues mid-epoch. The loader
    gets a generator of its own, so starting an epoch's iterator (which draws the workers'
    base seed) never touches the global RNG.
    """
    split_cfg = cfg.config.DATA[split]
    batch_size = int(split_cfg.BATCHSIZE_PER_REPLICA)
    sampler_spec = plain(split_cfg.get("SAMPLER", {"NAME": "distributed_shuffle", "PARAMS": {}}))
    sampler = registry.build_sampler(
        sampler_spec, dataset=dataset, batch_size=batch_size, rank=rank, world_size=world_size, seed=seed,
        drop_last=bool(split_cfg.DROP_LAST),
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
        collate_fn=batched.collate_decoded if _augment_on_device(cfg, split) else collate_views,
        pin_memory=torch.cuda.is_available(),
        # Workers are re-created every epoch so they see the dataset's new epoch (augmentation seeds).
        persistent_workers=False,
        generator=loader_generator,
    )
    return loader, sampler
