"""Batched, per-sample-random augmentation: multi-crop at batch speed (``config.DATA.TRAIN.AUGMENT_ON=device``).

The per-image path (``AUGMENT_ON=loader``) runs the configured transform image by
image in the data-loader workers. The batched path splits that work:

1. loader workers only decode (the ``decode_only`` transform: a uint8 tensor,
   longer side <= ``DATA.TRAIN.DECODE_MAX_SIZE``; JPEGs through
   ``torchvision.io.decode_jpeg`` when the source reads files) and
   ``collate_decoded`` pads the batch into one uint8 tensor;
2. on the training device, the callable from ``build_device_augment(cfg)`` cuts and
   augments every view of the whole batch at once (``BatchedViews``) and puts the
   view list, in the per-image transform's layout, under ``batch["views"]``.

The batched path reads its settings from the per-image transform itself
(``spec.view_plan``), draws each sample's parameters from (seed, epoch, index)
(``params``) with torchvision's sampling rules, and applies them with batched
torch / torchvision / kornia operators (``ops``). So both paths draw the same
augmentation distribution (tested), and a sample's views do not depend on the
batch, position, rank or device it lands on: exact resume holds. What differs is
below the distribution: the per-image path rounds pixels to uint8 between colour
steps where the batched one stays in float, and on CUDA crops are resampled by
``roi_align`` (box averaging) instead of torchvision's antialiased bilinear kernel.

Wiring: ``ssl_ext.data.build`` gives the training split a ``decode_only`` dataset
(``decode_to_tensors`` + ``build_loader_transform``) and ``collate_decoded`` when
``augment_on(cfg) == "device"``; ``ssl_ext.engine.train_engine.build_task`` sets
``task.device_augment = build_device_augment(cfg)``, which the trainer calls on
each batch right after moving it to the device.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import torch

from ssl_ext.data.batched.spec import ViewSpec, register_view_plan, view_plan

AUGMENT_ON_CHOICES = ("loader", "device")

__all__ = [
    "AUGMENT_ON_CHOICES", "BatchedViews", "DeviceAugment", "ViewSpec", "augment_on", "build_device_augment",
    "build_loader_transform", "collate_decoded", "decode_to_tensors", "register_view_plan", "view_plan",
]


def __getattr__(name: str):
    if name == "BatchedViews":  # imports kornia: only when the batched path is used
        from ssl_ext.data.batched.augment import BatchedViews

        return BatchedViews
    raise AttributeError(name)


def augment_on(cfg) -> str:
    """``config.DATA.TRAIN.AUGMENT_ON``, checked: ``loader`` or ``device``."""
    value = str(cfg.config.DATA.TRAIN.get("AUGMENT_ON", "loader"))
    if value not in AUGMENT_ON_CHOICES:
        raise ValueError(
            f"config.DATA.TRAIN.AUGMENT_ON={value!r}: use 'loader' (augment image by image in the data-loader "
            f"workers) or 'device' (workers only decode; views are made batch-wise on the training device)."
        )
    return value


def _train_transform(cfg):
    import registry
    from omegaconf import OmegaConf

    spec = cfg.config.DATA.TRAIN.TRANSFORM
    return registry.build_transform(OmegaConf.to_container(spec, resolve=True) if OmegaConf.is_config(spec) else spec)


def build_loader_transform(cfg):
    """The loader's per-item transform under ``AUGMENT_ON=device``: ``decode_only`` with the views' channel count."""
    from ssl_ext.data.transforms.batched_decode import DecodeOnlyTransform

    transform = _train_transform(cfg)
    max_size = int(cfg.config.DATA.TRAIN.get("DECODE_MAX_SIZE", 512))
    largest = max(max(spec.size) for spec, _ in view_plan(transform))
    if max_size < largest:
        raise ValueError(
            f"config.DATA.TRAIN.DECODE_MAX_SIZE={max_size} is smaller than the largest view of "
            f"config.DATA.TRAIN.TRANSFORM ({largest} px): every crop would be upsampled. Set it to at least {largest}."
        )
    return DecodeOnlyTransform(max_size=max_size, channels=int(getattr(transform, "channels", 3)))


def decode_to_tensors(dataset):
    """Make every file-reading source inside ``dataset`` return uint8 tensors (``decode_jpeg``); returns ``dataset``.

    Walks ``ConcatDataset.datasets`` and wrappers' ``dataset`` / ``base``; other sources are left as they are
    (``decode_only`` accepts PIL images and tensors alike).
    """
    from ssl_ext.data.sources.file_source import ImageFileSource

    stack, seen = [dataset], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, ImageFileSource):
            node.decode_to_tensor = True
        stack.extend(getattr(node, "datasets", []) or [])
        stack.extend(child for child in (getattr(node, "dataset", None), getattr(node, "base", None)) if child is not None)
    return dataset


def collate_decoded(items) -> Dict[str, Any]:
    """Batch of ``decode_only`` items -> ``images`` (B, C, Hmax, Wmax) uint8, zero-padded; ``image_sizes`` (B, 2).

    ``images`` is channels-last in memory (the layout of torch's fast uint8 resize
    kernels); ``label`` and ``index`` as in ``collate_views``.
    """
    views, labels, indices = zip(*items)
    images = []
    for item_views, index in zip(views, indices):
        if len(item_views) != 1 or not torch.is_tensor(item_views[0]) or item_views[0].dtype != torch.uint8:
            raise TypeError(
                f"collate_decoded: item {index} is not one uint8 image tensor; with config.DATA.TRAIN.AUGMENT_ON=device "
                f"the loader's transform must be decode_only (ssl_ext.data.batched.build_loader_transform)."
            )
        images.append(item_views[0])
    channels = {image.shape[0] for image in images}
    if len(channels) != 1:
        raise ValueError(f"collate_decoded: images of one batch have different channel counts {sorted(channels)}.")
    sizes = torch.tensor([image.shape[-2:] for image in images], dtype=torch.long)
    height, width = (int(v) for v in sizes.max(dim=0).values)
    batch = torch.empty((len(images), height, width, channels.pop()), dtype=torch.uint8)
    for slot, image in zip(batch, images):
        h, w = image.shape[1:]
        slot[:h, :w] = image.permute(1, 2, 0)  # a plain copy for the channels-last images decode_only returns
        slot[h:].zero_()
        slot[:h, w:].zero_()
    return {
        "images": batch.permute(0, 3, 1, 2),
        "image_sizes": sizes,
        "label": torch.tensor(labels, dtype=torch.long),
        "index": torch.tensor(indices, dtype=torch.long),
    }


class DeviceAugment:
    """``fn(batch, task) -> batch``: the views of a ``collate_decoded`` batch, made on the batch's device.

    The epoch is ``batch["epoch"]`` when the batch carries one, else ``task.epoch``
    (the trainer's current epoch); the seed is ``config.SEED_VALUE``. The returned
    batch has ``views`` (the transform's layout) instead of ``images``.
    """

    def __init__(self, views: "BatchedViews", seed: int) -> None:  # noqa: F821
        self.views, self.seed = views, int(seed)

    def __call__(self, batch: Dict[str, Any], task=None) -> Dict[str, Any]:
        if "images" not in batch:
            raise KeyError(
                "config.DATA.TRAIN.AUGMENT_ON=device: the batch has no 'images'; the training loader must use the "
                "decode_only transform and ssl_ext.data.batched.collate_decoded (see ssl_ext/data/batched/__init__.py)."
            )
        epoch = batch.get("epoch", getattr(task, "epoch", None))
        if epoch is None:
            raise ValueError("DeviceAugment: pass the task (for its epoch) or a batch with an 'epoch' entry.")
        epoch = int(epoch.flatten()[0]) if torch.is_tensor(epoch) else int(epoch)
        views: List[torch.Tensor] = self.views(batch["images"], batch["image_sizes"], batch["index"], self.seed, epoch)
        out = {key: value for key, value in batch.items() if key not in ("images", "image_sizes")}
        out["views"] = views
        return out

    def __repr__(self) -> str:
        return f"DeviceAugment({self.views!r}, seed={self.seed})"


def build_device_augment(cfg) -> Optional[Callable[[Dict[str, Any], Any], Dict[str, Any]]]:
    """The device-side augmentation of ``DATA.TRAIN.TRANSFORM``, or ``None`` unless ``AUGMENT_ON=device``.

    Fails at build time, naming the transform, when it has no batched view plan.
    """
    if augment_on(cfg) != "device":
        return None
    from ssl_ext.data.batched.augment import BatchedViews

    return DeviceAugment(BatchedViews.from_transform(_train_transform(cfg)), seed=int(cfg.config.SEED_VALUE))
