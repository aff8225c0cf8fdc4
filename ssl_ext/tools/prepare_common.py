"""Shared by the dataset-preparation commands (``ssl-ext-run prepare-*``, ``tools/prepare_*.py``): VISSL-style filelists.

Every tool writes, for each split (``train``, ``val``)::

    <output>/<split>_images.npy   numpy unicode array of absolute image paths
    <output>/<split>_labels.npy   int64 array of class ids (0 .. C-1)

which the ``disk_filelist`` data source reads with ``DATA_PATHS: [<output>]``.
Paths are stored as a plain unicode array (not a pickled object array), so the
files load with ``allow_pickle=False``. Files are written through a temporary
name and renamed, so an interrupted run never leaves half a filelist.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff")


class PrepareError(Exception):
    """Bad input layout; the message names the file or folder and what was expected."""


def _atomic_save(path: str, array: np.ndarray) -> None:
    tmp = f"{path}.tmp-{os.getpid()}.npy"
    np.save(tmp, array, allow_pickle=False)
    os.replace(tmp, path)


def write_filelist(output: str, split: str, paths: Sequence[str], labels: Sequence[int]) -> Tuple[str, str]:
    """Write ``<output>/<split>_images.npy`` and ``_labels.npy``; return both paths."""
    if len(paths) != len(labels):
        raise PrepareError(f"{split}: {len(paths)} images but {len(labels)} labels")
    if not paths:
        raise PrepareError(f"{split}: no images found; check the input layout (see --help)")
    os.makedirs(output, exist_ok=True)
    images_path = os.path.join(output, f"{split}_images.npy")
    labels_path = os.path.join(output, f"{split}_labels.npy")
    _atomic_save(images_path, np.array([os.path.abspath(p) for p in paths], dtype=np.str_))
    _atomic_save(labels_path, np.asarray(labels, dtype=np.int64))
    return images_path, labels_path


def write_classes(output: str, names: Sequence[str]) -> str:
    """``<output>/classes.json``: the class name of every label id, in order."""
    path = os.path.join(output, "classes.json")
    tmp = path + f".tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(list(names), f, indent=1)
    os.replace(tmp, path)
    return path


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def require(path: str, what: str) -> str:
    if not os.path.exists(path):
        raise PrepareError(f"{what} {path!r} does not exist")
    return path


def summarize(output: str, splits: Dict[str, Iterable[int]]) -> str:
    lines = [f"wrote VISSL filelists to {os.path.abspath(output)}:"]
    for split, labels in splits.items():
        labels = np.asarray(list(labels))
        lines.append(f"  {split}: {labels.size} images, {np.unique(labels).size} classes")
    lines.append(f"use with: config.DATA.TRAIN.DATA_SOURCES=[disk_filelist] config.DATA.TRAIN.DATA_PATHS=[{os.path.abspath(output)}]")
    return "\n".join(lines)


def run(main, argv: List[str] = None) -> int:
    """Call ``main(argv)``; print a PrepareError as a one-line error and return 2."""
    try:
        print(main(argv))
    except PrepareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
