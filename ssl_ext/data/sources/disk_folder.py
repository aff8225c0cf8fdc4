"""``disk_folder``: images in the ImageFolder layout, ``<path>/<class name>/<image file>``.

As VISSL's ``disk_folder`` source: the path of a split (from
``config.DATA.<SPLIT>.DATA_PATHS`` or the dataset catalog) holds one folder per
class; labels are the classes' positions in sorted order (torchvision's
``find_classes``). Since train and val folders are listed separately, pass
``classes`` to pin the label order when a split may lack a class. Unreadable
files fail naming the file, or are skipped and counted with ``skip_corrupt``.
"""
from __future__ import annotations

import os
from typing import List, Optional

from registry import register_data_source
from ssl_ext.data.catalog import ensure_exists, no_path_error, resolve_paths
from ssl_ext.data.sources.base import normalize_split
from ssl_ext.data.sources.file_source import ImageFileSource


@register_data_source("disk_folder")
class DiskFolderSource(ImageFileSource):
    """ImageFolder layout; see the module docstring."""

    owner = "disk_folder data source"

    def __init__(
        self,
        split: str,
        data_path: str = "",
        dataset_name: str = "",
        skip_corrupt: bool = False,
        classes: Optional[List[str]] = None,
        extensions: Optional[List[str]] = None,
        image_mode: str = "RGB",
        scan_workers: int = 8,
    ) -> None:
        from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

        self.split = normalize_split(self.owner, split)
        paths, origin = resolve_paths(self.split, data_path, dataset_name)
        if not paths:
            raise no_path_error(self.owner, self.split, "/data/imagenet/train")
        root = ensure_exists(self.owner, paths[0], origin, "image folder")
        if not os.path.isdir(root):
            raise NotADirectoryError(f"{self.owner}: {root!r} from {origin} is not a folder of class folders.")
        found, _ = find_classes(root) if any(e.is_dir() for e in os.scandir(root)) else ([], {})
        if not found:
            raise FileNotFoundError(f"{self.owner}: {root!r} from {origin} has no class sub-folders (<root>/<class>/<image>).")
        if classes:
            unknown = sorted(set(found) - set(classes))
            if unknown:
                raise ValueError(f"{self.owner}: folders {unknown} under {root!r} are not in the given classes list.")
            self.classes = list(classes)
        else:
            self.classes = found
        class_to_idx = {name: i for i, name in enumerate(self.classes)}
        allowed = tuple(e.lower() for e in (extensions or IMG_EXTENSIONS))
        # allow_empty: a class folder may be empty in a split; an empty dataset is caught below.
        samples = make_dataset(root, {c: class_to_idx[c] for c in found}, extensions=allowed, allow_empty=True)
        if not samples:
            raise FileNotFoundError(f"{self.owner}: no image files with extensions {list(allowed)} under {root!r} ({origin}).")
        self.root = root
        self._set_samples(samples, len(self.classes), image_mode, skip_corrupt, scan_workers)
