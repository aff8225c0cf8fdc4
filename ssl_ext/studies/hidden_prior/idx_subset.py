"""Class-balanced subsets of IDX datasets (Fashion-MNIST, MNIST), written as IDX files.

The CPU-scale study trains on a few thousand real Fashion-MNIST images instead of
60,000 so that a dozen pretraining runs fit in minutes. The subset is written in the
source's own format, so the unchanged ``fashion_mnist`` data source reads it through
``DATA_PATHS``, and the long-tailed subsets of the prior study are drawn from it like
from the full set. Which images are kept depends on ``seed`` only.
"""
from __future__ import annotations

import gzip
import json
import os
from typing import Dict

import numpy as np

from ssl_ext.utils.io import atomic_write_bytes, atomic_write_text

# (split prefix in the file names, split name of the data source)
SPLIT_FILES = (("train", "train"), ("t10k", "val"))
LABELS_MAGIC, IMAGES_MAGIC = 2049, 2051
MANIFEST = "subset.json"


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """An IDX file of unsigned bytes: magic, one big-endian int32 per dimension, then the data."""
    header = magic.to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def balanced_indices(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """``per_class`` random indices of every class (all of a smaller class), sorted."""
    rng = np.random.default_rng(seed)
    kept = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        kept.append(rng.choice(members, size=min(per_class, members.size), replace=False))
    return np.sort(np.concatenate(kept))


def _source_file(folder: str, name: str) -> str:
    for candidate in (name + ".gz", name):
        path = os.path.join(folder, candidate)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(
        f"data_subset.source: {folder!r} has no {name}(.gz); install Debian's dataset-fashion-mnist "
        f"(apt-get install -y dataset-fashion-mnist) or point data_subset.source at an IDX folder"
    )


def write_idx_subset(source_root: str, target_root: str, per_class: Dict[str, int], seed: int = 0) -> Dict[str, object]:
    """Write ``per_class[split]`` images of every class of each split (0 = all) to ``target_root``.

    Reuses an existing subset with the same source, sizes and seed (its manifest says so).
    """
    from ssl_ext.data.sources.fashion_mnist import read_idx

    manifest = {"source": os.path.abspath(source_root), "per_class": dict(per_class), "seed": int(seed), "images": {}}
    manifest_path = os.path.join(target_root, MANIFEST)
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            existing = json.load(f)
        if {k: existing.get(k) for k in ("source", "per_class", "seed")} == {k: manifest[k] for k in ("source", "per_class", "seed")}:
            return existing
    for prefix, split in SPLIT_FILES:
        count = int(per_class.get(split, 0))
        if count < 0:
            raise ValueError(f"subset size for {split} must be >= 0 images per class (0 = all), got {count}")
        images = read_idx(_source_file(source_root, f"{prefix}-images-idx3-ubyte"), IMAGES_MAGIC)
        labels = read_idx(_source_file(source_root, f"{prefix}-labels-idx1-ubyte"), LABELS_MAGIC)
        keep = balanced_indices(labels, count, seed) if count else np.arange(labels.size)
        atomic_write_bytes(os.path.join(target_root, f"{prefix}-images-idx3-ubyte.gz"), gzip.compress(idx_bytes(images[keep], IMAGES_MAGIC), 6))
        atomic_write_bytes(os.path.join(target_root, f"{prefix}-labels-idx1-ubyte.gz"), gzip.compress(idx_bytes(labels[keep], LABELS_MAGIC), 6))
        manifest["images"][split] = int(keep.size)
    atomic_write_text(manifest_path, json.dumps(manifest, indent=1))
    return manifest
