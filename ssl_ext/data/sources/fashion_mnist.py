"""``fashion_mnist``: Zalando's Fashion-MNIST (Xiao et al., arXiv:1708.07747) from gzipped IDX files.

70,000 real 28x28 grayscale images in 10 classes (60,000 train, 10,000 test).
The default folder is where Debian's ``dataset-fashion-mnist`` package installs
them (``apt-get install dataset-fashion-mnist``): ``/usr/share/datasets/fashion-mnist``
with ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz``. ``DATA_PATHS`` or a
catalog entry may name another folder; uncompressed files (no ``.gz``) work too.
``train`` is the 60,000-image training set, ``val`` the 10,000-image test set.
Items are PIL ``"L"`` images.
"""
from __future__ import annotations

import gzip
import os

import numpy as np
from PIL import Image

from registry import register_data_source
from ssl_ext.data.catalog import ensure_exists, resolve_paths
from ssl_ext.data.sources.base import LabelledSource, normalize_split

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
FILE_PREFIX = {"train": "train", "val": "t10k"}
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
# IDX magic numbers: 0x00000801 = unsigned bytes, 1 dimension; 0x00000803 = unsigned bytes, 3 dimensions.
LABELS_MAGIC, IMAGES_MAGIC = 2049, 2051


def read_idx(path: str, magic: int) -> np.ndarray:
    """An IDX file (optionally gzipped) as a uint8 array; errors name the file."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"Cannot read IDX file {path!r}: {exc}. Reinstall dataset-fashion-mnist or re-download it.") from None
    ndim = magic - 2048
    header = 4 + 4 * ndim
    if len(data) < header or int.from_bytes(data[:4], "big") != magic:
        raise ValueError(f"{path!r} is not an IDX file with magic number {magic} (got {data[:4].hex() or 'nothing'}).")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(data) - header != int(np.prod(shape)):
        raise ValueError(f"IDX file {path!r} is truncated or padded: header says {shape}, {len(data) - header} bytes follow.")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _find(folder: str, name: str) -> str:
    for candidate in (name + ".gz", name):
        path = os.path.join(folder, candidate)
        if os.path.exists(path):
            return path
    return os.path.join(folder, name + ".gz")


@register_data_source("fashion_mnist")
class FashionMNISTSource(LabelledSource):
    """Fashion-MNIST from IDX files; see the module docstring."""

    owner = "fashion_mnist data source"

    def __init__(self, split: str, data_path: str = "", dataset_name: str = "", skip_corrupt: bool = False) -> None:
        self.split = normalize_split(self.owner, split)
        paths, origin = resolve_paths(self.split, data_path, dataset_name)
        if paths:
            folder = paths[0]
        else:
            folder, origin = DEFAULT_ROOT, "the default (Debian package dataset-fashion-mnist; install it with apt-get)"
        ensure_exists(self.owner, folder, origin, "folder")
        prefix = FILE_PREFIX[self.split]
        images_path = ensure_exists(self.owner, _find(folder, f"{prefix}-images-idx3-ubyte"), origin, "images file")
        labels_path = ensure_exists(self.owner, _find(folder, f"{prefix}-labels-idx1-ubyte"), origin, "labels file")
        self.images = read_idx(images_path, IMAGES_MAGIC)
        labels = read_idx(labels_path, LABELS_MAGIC)
        if labels.shape[0] != self.images.shape[0]:
            raise ValueError(f"{self.owner}: {images_path!r} has {self.images.shape[0]} images but {labels_path!r} {labels.shape[0]} labels.")
        if labels.size and labels.max() >= len(CLASSES):
            raise ValueError(f"{self.owner}: {labels_path!r} has label {int(labels.max())}; Fashion-MNIST has 10 classes.")
        self.targets = labels.astype(np.int64).tolist()
        self.num_classes = len(CLASSES)
        self.classes = CLASSES
        self.root = folder

    def __getitem__(self, index: int):
        return Image.fromarray(self.images[index]), self.targets[index]
