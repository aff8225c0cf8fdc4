"""``torchvision_dataset``: CIFAR-10/100 and similar torchvision datasets, read from a local root.

Never downloads (``download=False`` always; the machines running ssl_ext may
have no internet, and a silent download into a run directory is a surprise). The
root comes from ``config.DATA.<SPLIT>.DATA_PATHS`` or the dataset catalog and must
already hold the files torchvision expects, e.g. ``<root>/cifar-10-batches-py/``
for CIFAR-10 or ``<root>/FashionMNIST/raw/`` (uncompressed IDX files) for
FashionMNIST; otherwise the error names the root and what should be in it.

``train`` maps to the dataset's training split and ``val`` to its test split
(its validation split where one exists), per the table ``SPLITS`` below.
"""
from __future__ import annotations

import os
from typing import Dict, Tuple

from registry import register_data_source
from ssl_ext.data.catalog import ensure_exists, no_path_error, resolve_paths
from ssl_ext.data.sources.base import LabelledSource, normalize_split

# class name -> (keyword selecting the split, value for train, value for val)
SPLITS: Dict[str, Tuple[str, object, object]] = {
    "CIFAR10": ("train", True, False),
    "CIFAR100": ("train", True, False),
    "MNIST": ("train", True, False),
    "FashionMNIST": ("train", True, False),
    "KMNIST": ("train", True, False),
    "QMNIST": ("train", True, False),
    "USPS": ("train", True, False),
    "SVHN": ("split", "train", "test"),
    "STL10": ("split", "train", "test"),
    "Flowers102": ("split", "train", "val"),
    "DTD": ("split", "train", "val"),
    "Food101": ("split", "train", "test"),
    "OxfordIIITPet": ("split", "trainval", "test"),
}
LABEL_ATTRIBUTES = ("targets", "labels", "_labels")


@register_data_source("torchvision_dataset")
class TorchvisionDatasetSource(LabelledSource):
    """A torchvision dataset from local files; see the module docstring."""

    owner = "torchvision_dataset data source"

    def __init__(
        self,
        split: str,
        data_path: str = "",
        dataset_name: str = "",
        skip_corrupt: bool = False,
        dataset_class: str = "CIFAR10",
    ) -> None:
        import torchvision.datasets

        self.split = normalize_split(self.owner, split)
        if dataset_class not in SPLITS:
            raise ValueError(f"{self.owner}: dataset_class must be one of {sorted(SPLITS)}, got {dataset_class!r}.")
        paths, origin = resolve_paths(self.split, data_path, dataset_name)
        if not paths:
            raise no_path_error(self.owner, self.split, f"/data/{dataset_class.lower()}")
        root = ensure_exists(self.owner, paths[0], origin, f"{dataset_class} root")
        keyword, train_value, val_value = SPLITS[dataset_class]
        cls = getattr(torchvision.datasets, dataset_class)
        try:
            self.dataset = cls(root=root, download=False, **{keyword: train_value if self.split == "train" else val_value})
        except RuntimeError:  # torchvision's "Dataset not found or corrupted. You can use download=True ..."
            expected = getattr(cls, "base_folder", None) or os.path.join(dataset_class, "raw")
            raise FileNotFoundError(
                f"{self.owner}: {dataset_class} files not found under {root!r} (from {origin}); expected "
                f"{os.path.join(root, expected)!r} as torchvision lays it out (or its files are corrupted). ssl_ext never downloads: "
                "put the files there, or point DATA_PATHS / the catalog entry at the right root."
            ) from None
        labels = next((getattr(self.dataset, a) for a in LABEL_ATTRIBUTES if getattr(self.dataset, a, None) is not None), None)
        if labels is None:
            raise ValueError(f"{self.owner}: {dataset_class} exposes no labels under {LABEL_ATTRIBUTES}.")
        self.targets = [int(t) for t in (labels.tolist() if hasattr(labels, "tolist") else labels)]
        self.classes = list(getattr(self.dataset, "classes", []) or [])
        self.num_classes = len(self.classes) or (max(self.targets) + 1 if self.targets else 0)
        self.dataset_class = dataset_class

    def __getitem__(self, index: int):
        image, _ = self.dataset[index]
        return image, self.targets[index]
