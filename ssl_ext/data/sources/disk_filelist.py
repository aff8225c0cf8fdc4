"""``disk_filelist``: VISSL's filelists, a ``.npy`` array of image paths plus a ``.npy`` array of labels.

Where the two files come from, first match wins:

* a catalog entry with two paths ``[images.npy, labels.npy]`` (``DATASET_NAMES``);
* ``DATA_PATHS`` naming the images ``.npy`` and ``labels_path`` (or, by VISSL's naming
  convention, the sibling file with ``images`` replaced by ``labels``);
* ``DATA_PATHS`` naming a folder holding ``<split>_images.npy`` and ``<split>_labels.npy``.

Relative image paths are taken relative to ``image_root``. Paths are stored as a
numpy string array; object arrays need ``allow_pickle=true`` (pickle can run code,
so only for files you trust). Unreadable images fail naming the file, or are
skipped and counted with ``skip_corrupt``.
"""
from __future__ import annotations

import os

import numpy as np

from registry import register_data_source
from ssl_ext.data.catalog import ensure_exists, no_path_error, resolve_paths
from ssl_ext.data.sources.base import normalize_split
from ssl_ext.data.sources.file_source import ImageFileSource


def _load_array(owner: str, path: str, origin: str, allow_pickle: bool) -> np.ndarray:
    ensure_exists(owner, path, origin, "filelist")
    try:
        return np.load(path, allow_pickle=allow_pickle)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise ValueError(
                f"{owner}: {path!r} holds Python objects; re-save it as a numpy string array or set "
                "allow_pickle: true under SOURCE_PARAMS if you trust the file."
            ) from None
        raise ValueError(f"{owner}: cannot read {path!r} ({origin}) as a .npy file: {exc}") from None
    except OSError as exc:
        raise ValueError(f"{owner}: cannot read {path!r} ({origin}) as a .npy file: {exc}") from None


@register_data_source("disk_filelist")
class DiskFilelistSource(ImageFileSource):
    """VISSL filelists; see the module docstring."""

    owner = "disk_filelist data source"

    def __init__(
        self,
        split: str,
        data_path: str = "",
        dataset_name: str = "",
        skip_corrupt: bool = False,
        labels_path: str = "",
        image_root: str = "",
        num_classes: int = 0,
        allow_pickle: bool = False,
        image_mode: str = "RGB",
        scan_workers: int = 8,
    ) -> None:
        self.split = normalize_split(self.owner, split)
        paths, origin = resolve_paths(self.split, data_path, dataset_name)
        if not paths:
            raise no_path_error(self.owner, self.split, f"/data/inat18/{self.split}_images.npy")
        images_path = ensure_exists(self.owner, paths[0], origin)
        if os.path.isdir(images_path):
            folder = images_path
            images_path = os.path.join(folder, f"{self.split}_images.npy")
            labels_default = os.path.join(folder, f"{self.split}_labels.npy")
        else:
            head, tail = os.path.split(images_path)
            labels_default = os.path.join(head, tail.replace("images", "labels")) if "images" in tail else ""
        labels_path = labels_path or (paths[1] if len(paths) > 1 else labels_default)
        if not labels_path:
            raise ValueError(
                f"{self.owner}: no labels file for {images_path!r}: set labels_path under SOURCE_PARAMS, name the "
                "images file *images*.npy with a *labels*.npy sibling, or give both paths in a catalog entry."
            )
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"{self.owner}: num_classes must be an int >= 0 (0: max label + 1), got {num_classes!r}.")
        images = _load_array(self.owner, images_path, origin, allow_pickle).reshape(-1)
        labels = _load_array(self.owner, labels_path, origin, allow_pickle).reshape(-1)
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{self.owner}: {images_path!r} lists {images.shape[0]} images but {labels_path!r} has {labels.shape[0]} labels.")
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            if not np.all(np.mod(labels.astype(np.float64), 1) == 0):
                raise ValueError(f"{self.owner}: labels in {labels_path!r} must be integers, got dtype {labels.dtype}.")
        labels = labels.astype(np.int64)
        if labels.size and labels.min() < 0:
            raise ValueError(f"{self.owner}: {labels_path!r} has a negative label {int(labels.min())}.")
        inferred = int(labels.max()) + 1 if labels.size else 0
        if num_classes and inferred > num_classes:
            raise ValueError(f"{self.owner}: {labels_path!r} has label {inferred - 1} but num_classes={num_classes}.")
        root = os.path.expanduser(image_root)
        files = [str(p) if not root or os.path.isabs(str(p)) else os.path.join(root, str(p)) for p in images.tolist()]
        self.images_path, self.labels_path = images_path, labels_path
        self._set_samples(list(zip(files, labels.tolist())), num_classes or inferred, image_mode, skip_corrupt, scan_workers)
