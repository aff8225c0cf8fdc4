"""``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 real images, 10 classes).

The data ships inside the scikit-learn wheel (``sklearn.datasets.load_digits``,
from the UCI optical recognition of handwritten digits set), so it works offline.
Pixel values 0..16 are mapped to 0..255 and each image is returned as a PIL
``"L"`` image upscaled to ``image_size`` (bilinear; ``image_size=8`` keeps the
original). ``train``/``val`` is a fixed stratified split (``train_fraction`` of
every class in ``train``, chosen by ``split_seed``), identical on every machine.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from registry import register_data_source
from ssl_ext.data.sources.base import LabelledSource, check_int, normalize_split


def stratified_split(targets: np.ndarray, train_fraction: float, seed: int) -> dict:
    """Indices of a stratified train/val split: per class, ``round(train_fraction * n_c)`` go to train."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(targets.size)
    train, val = train_test_split(indices, train_size=train_fraction, stratify=targets, random_state=seed, shuffle=True)
    return {"train": np.sort(train), "val": np.sort(val)}


@register_data_source("digits")
class DigitsSource(LabelledSource):
    """scikit-learn digits as PIL images; see the module docstring."""

    def __init__(
        self,
        split: str,
        data_path: str = "",
        dataset_name: str = "",
        skip_corrupt: bool = False,
        image_size: int = 32,
        train_fraction: float = 0.8,
        split_seed: int = 0,
    ) -> None:
        owner = "digits data source"
        self.split = normalize_split(owner, split)
        if data_path:
            raise ValueError(
                f"{owner}: the digits are bundled with scikit-learn, so data_path must be empty, got {data_path!r}. "
                "Remove it from config.DATA.<TRAIN|VAL>.DATA_PATHS."
            )
        check_int(owner, "image_size", image_size, 8)
        check_int(owner, "split_seed", split_seed, 0)
        if isinstance(train_fraction, bool) or not isinstance(train_fraction, (int, float)) or not 0 < train_fraction < 1:
            raise ValueError(f"{owner}: train_fraction must be a float in (0, 1), got {train_fraction!r}.")
        from sklearn.datasets import load_digits

        bunch = load_digits()
        all_targets = np.asarray(bunch.target, dtype=np.int64)
        chosen = stratified_split(all_targets, float(train_fraction), split_seed)[self.split]
        pixels = np.round(np.asarray(bunch.images[chosen], dtype=np.float64) * (255.0 / 16.0)).astype(np.uint8)
        if image_size != 8:
            pixels = np.stack(
                [np.asarray(Image.fromarray(p).resize((image_size, image_size), Image.BILINEAR)) for p in pixels]
            )
        self.image_size = image_size
        self.source_indices = chosen
        self.pixels = pixels
        self.targets = all_targets[chosen].tolist()
        self.num_classes = 10
        self.classes = [str(d) for d in range(10)]

    def __getitem__(self, index: int):
        return Image.fromarray(self.pixels[index]), self.targets[index]
