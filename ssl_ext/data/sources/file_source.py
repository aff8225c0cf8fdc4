"""Base of the sources that read one image file per item (``disk_folder``, ``disk_filelist``)."""
from __future__ import annotations

from typing import List, Sequence, Tuple

from ssl_ext.data.image_loading import IMAGE_MODES, find_unreadable, load_image, load_image_tensor, report_skipped
from ssl_ext.data.sources.base import LabelledSource


class ImageFileSource(LabelledSource):
    """Items are ``(load_image(path), label)`` over a list of ``(path, label)`` samples.

    With ``skip_corrupt`` every file is decoded once when the source is built and
    the unreadable ones are dropped (``num_skipped``, ``skipped_files``); without it
    an unreadable file raises ``CorruptImageError`` naming it when it is loaded.
    """

    owner = "image file source"
    # True: items are uint8 (C, H, W) tensors decoded by torchvision (JPEG) instead of PIL images; set by the
    # batched augmentation path (ssl_ext.data.batched.decode_to_tensors), whose loader only decodes.
    decode_to_tensor = False

    def _set_samples(self, samples: Sequence[Tuple[str, int]], num_classes: int, image_mode: str,
                     skip_corrupt: bool, scan_workers: int) -> None:
        if image_mode not in IMAGE_MODES:
            raise ValueError(f"{self.owner}: image_mode must be one of {list(IMAGE_MODES)}, got {image_mode!r}.")
        if isinstance(scan_workers, bool) or not isinstance(scan_workers, int) or scan_workers < 1:
            raise ValueError(f"{self.owner}: scan_workers must be a positive int, got {scan_workers!r}.")
        samples = list(samples)
        self.skipped_files: List[Tuple[str, str]] = []
        if skip_corrupt:
            bad = find_unreadable([path for path, _ in samples], workers=scan_workers)
            report_skipped(self.owner, bad, len(samples))
            self.skipped_files = [(path, reason) for _, path, reason in bad]
            dropped = {i for i, _, _ in bad}
            samples = [s for i, s in enumerate(samples) if i not in dropped]
        self.samples = samples
        self.targets = [int(label) for _, label in samples]
        self.num_classes = int(num_classes)
        self.image_mode = image_mode

    @property
    def num_skipped(self) -> int:
        return len(self.skipped_files)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        load = load_image_tensor if self.decode_to_tensor else load_image
        return load(path, self.image_mode), label
