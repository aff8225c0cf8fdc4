"""``synthetic``: deterministic random labelled images of any size, for tests and benchmarks.

Each class ``c`` has a smooth template: a ``pattern_grid x pattern_grid`` grid of
uniform random colours (drawn from ``(seed, c)``) upscaled bilinearly to
``image_size``. Image ``i`` of a split is its class template plus Gaussian pixel
noise of standard deviation ``noise_std`` (drawn from ``(seed, split, i)``),
clipped to [0, 1] and stored as 8-bit. Templates are shared by both splits, noise
is not, so a model can learn on ``train`` and be measured on ``val``.

Labels are balanced (``i mod num_classes``) and then shuffled per split. Images are
generated on access, so a dataset of millions of items costs only its label list.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from registry import register_data_source
from ssl_ext.data.sources.base import LabelledSource, check_channels, check_int, normalize_split

_SPLIT_STREAM = {"train": 1, "val": 2}
_MAX_CACHED_TEMPLATES = 512


@register_data_source("synthetic")
class SyntheticSource(LabelledSource):
    """Class template + noise images; see the module docstring."""

    def __init__(
        self,
        split: str,
        data_path: str = "",
        dataset_name: str = "",
        skip_corrupt: bool = False,
        num_images: int = 256,
        num_classes: int = 10,
        image_size: int = 32,
        channels: int = 3,
        noise_std: float = 0.25,
        pattern_grid: int = 4,
        seed: int = 0,
    ) -> None:
        owner = "synthetic data source"
        self.split = normalize_split(owner, split)
        if data_path:
            raise ValueError(f"{owner}: images are generated, so data_path must be empty, got {data_path!r}.")
        check_int(owner, "num_images", num_images, 1)
        check_int(owner, "num_classes", num_classes, 1)
        check_int(owner, "image_size", image_size, 1)
        check_int(owner, "pattern_grid", pattern_grid, 1)
        check_int(owner, "seed", seed, 0)
        check_channels(owner, channels)
        if isinstance(noise_std, bool) or not isinstance(noise_std, (int, float)) or noise_std < 0:
            raise ValueError(f"{owner}: noise_std must be a float >= 0, got {noise_std!r}.")
        self.num_images, self.num_classes, self.image_size = num_images, num_classes, image_size
        self.channels, self.noise_std, self.pattern_grid, self.seed = channels, float(noise_std), pattern_grid, seed
        self.classes = [f"class_{c}" for c in range(num_classes)]
        self._stream = _SPLIT_STREAM[self.split]
        label_rng = np.random.default_rng([seed, self._stream, 0])
        self.targets = label_rng.permutation(np.arange(num_images) % num_classes).tolist()
        self._templates: dict = {}

    def template(self, label: int) -> np.ndarray:
        """Class ``label``'s mean image, float32 (H, W, C) in [0, 1]."""
        cached = self._templates.get(label)
        if cached is not None:
            return cached
        rng = np.random.default_rng([self.seed, 0, int(label)])
        grid = (rng.random((self.pattern_grid, self.pattern_grid, self.channels)) * 255).astype(np.uint8)
        small = Image.fromarray(grid if self.channels == 3 else grid[..., 0])
        large = small.resize((self.image_size, self.image_size), Image.BILINEAR)
        array = (np.asarray(large, dtype=np.float32) / 255.0).reshape(self.image_size, self.image_size, self.channels)
        if len(self._templates) >= _MAX_CACHED_TEMPLATES:
            self._templates.clear()
        self._templates[label] = array
        return array

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"synthetic data source: index {index} out of range for {len(self)} images.")
        index = index % len(self)
        label = self.targets[index]
        rng = np.random.default_rng([self.seed, self._stream, 1, index])
        template = self.template(label)
        pixels = template + self.noise_std * rng.standard_normal(template.shape, dtype=np.float32)
        pixels = (np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return Image.fromarray(pixels if self.channels == 3 else pixels[..., 0]), label
