"""Reading image files, with unreadable images named by file and never silently replaced.

``load_image`` decodes one file fully (PIL is lazy: a truncated JPEG only fails
when its pixels are read) and raises ``CorruptImageError`` naming the file.
``load_image_tensor`` returns a uint8 ``(C, H, W)`` tensor instead, decoding JPEGs
with ``torchvision.io.decode_jpeg`` (libjpeg-turbo, faster than PIL; it also
rejects truncated files) and every other format with PIL; its failures are the
same ``CorruptImageError``.
``find_unreadable`` checks many files up front, in threads, for sources built
with ``skip_corrupt``: those files are dropped from the dataset before any
sampler sees it, so batches stay full and indices stay stable, and the dataset
reports how many it dropped and which.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Sequence, Tuple

from PIL import Image

from ssl_ext.utils.io import path_manager

logger = logging.getLogger(__name__)

IMAGE_MODES = ("RGB", "L", "keep")
SKIP_HINT = (
    "Fix or delete the file, or set config.DATA.SKIP_CORRUPT=true to skip unreadable images "
    "(they are then counted and listed, never replaced)."
)


class CorruptImageError(OSError):
    """An image file that cannot be opened or decoded; the message names the file."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"Cannot read image {path!r}: {reason}. {SKIP_HINT}")
        self.path = path
        self.reason = reason


def _decode(path: str, mode: str, draft: bool) -> Image.Image:
    with path_manager.open(path, "rb") as f:
        image = Image.open(f)
        if draft and image.format == "JPEG":
            # Decoding at 1/8 scale still reads every entropy-coded byte, so truncation is caught, 8x cheaper.
            image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
        image.load()
    if mode != "keep" and image.mode != mode:
        image = image.convert(mode)
    return image


def load_image(path: str, mode: str = "RGB") -> Image.Image:
    """Decode ``path`` into a PIL image in ``mode`` (``RGB``, ``L`` or ``keep``), or raise ``CorruptImageError``."""
    try:
        return _decode(path, mode, draft=False)
    except CorruptImageError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise CorruptImageError(path, f"{type(exc).__name__}: {exc}") from exc


def unreadable_reason(path: str) -> Optional[str]:
    """``None`` if ``path`` decodes, else why not."""
    try:
        _decode(path, "keep", draft=True)
        return None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return f"{type(exc).__name__}: {exc}"


def find_unreadable(paths: Sequence[str], workers: int = 8) -> List[Tuple[int, str, str]]:
    """``(position, path, reason)`` of every file in ``paths`` that does not decode (decoding releases the GIL)."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        reasons = list(pool.map(unreadable_reason, paths, chunksize=64))
    return [(i, paths[i], reason) for i, reason in enumerate(reasons) if reason is not None]


def report_skipped(owner: str, skipped: List[Tuple[int, str, str]], total: int) -> None:
    if not skipped:
        return
    shown = "; ".join(f"{path} ({reason})" for _, path, reason in skipped[:5])
    more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    logger.warning("%s: skipped %d of %d unreadable images (config.DATA.SKIP_CORRUPT=true): %s%s",
                   owner, len(skipped), total, shown, more)


_JPEG_MAGIC = b"\xff\xd8\xff"


def load_image_tensor(path: str, mode: str = "RGB"):
    """Decode ``path`` into a uint8 ``(C, H, W)`` tensor in ``mode``, or raise ``CorruptImageError``.

    JPEGs go through ``torchvision.io.decode_jpeg`` (``L`` then reads the JPEG's own
    luma plane, within a few levels of PIL's RGB->L); other formats, and JPEGs it
    cannot return in ``mode``, through ``load_image``.
    """
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg
    from torchvision.transforms.v2.functional import pil_to_tensor

    try:
        with path_manager.open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise CorruptImageError(path, f"{type(exc).__name__}: {exc}") from exc
    if data[:3] == _JPEG_MAGIC:
        read_mode = {"RGB": ImageReadMode.RGB, "L": ImageReadMode.GRAY, "keep": ImageReadMode.UNCHANGED}[mode]
        try:
            image = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=read_mode)
        except RuntimeError as exc:
            if "unsupported" not in str(exc).lower():
                raise CorruptImageError(path, f"{type(exc).__name__}: {exc}") from exc
        else:
            if image.shape[0] in (1, 3):
                return image
    return pil_to_tensor(load_image(path, mode))
