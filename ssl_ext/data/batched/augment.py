"""``BatchedViews``: a multi-view transform applied to a whole batch of decoded images at once."""
from __future__ import annotations

from typing import List, Sequence

import torch

from ssl_ext.data.batched import ops
from ssl_ext.data.batched.params import draw_uniforms, sample_view_params
from ssl_ext.data.batched.spec import ViewPlan, view_plan

# CPU views are augmented in chunks of about this many floats (2 MiB, an L2 cache): each chunk stays in cache through
# all steps, which measured several times faster than whole-batch passes on a busy 2-core machine.
CPU_CHUNK_ELEMENTS = 1 << 19


class BatchedViews:
    """The views of a per-image multi-view transform, computed for a batch in one pass per view group.

    ``views = BatchedViews.from_transform(multi_crop)(images, image_sizes, indices, seed, epoch)``
    returns the same list layout as the per-image transform, each entry stacked
    over the batch (``views[v][b]`` is view ``v`` of sample ``b``), on the device
    of ``images``. ``images`` is ``(B, C, H, W)`` uint8 (0..255), zero-padded past
    each sample's ``image_sizes[b] = (height, width)``; crops never reach the
    padding. Parameters come from ``(seed, epoch, indices[b])`` only.
    """

    def __init__(self, plan: ViewPlan, channels: int = 3, name: str = "transform") -> None:
        if channels not in (1, 3):
            raise ValueError(f"BatchedViews: channels must be 1 or 3, got {channels!r}.")
        self.plan, self.channels, self.name = plan, channels, name
        self.num_views = sum(count for _, count in plan)

    @classmethod
    def from_transform(cls, transform) -> "BatchedViews":
        channels = int(getattr(transform, "channels", 3))
        return cls(view_plan(transform), channels=channels, name=type(transform).__name__)

    def __call__(self, images: torch.Tensor, image_sizes: torch.Tensor, indices: Sequence[int], seed: int,
                 epoch: int) -> List[torch.Tensor]:
        if images.ndim != 4:
            raise ValueError(f"BatchedViews: expected images (B, C, H, W), got shape {tuple(images.shape)}.")
        batch = images.shape[0]
        indices = [int(i) for i in (indices.tolist() if torch.is_tensor(indices) else indices)]
        if len(indices) != batch or image_sizes.shape != (batch, 2):
            raise ValueError(
                f"BatchedViews: {batch} images need {batch} indices and image_sizes of shape ({batch}, 2); "
                f"got {len(indices)} indices and image_sizes {tuple(image_sizes.shape)}."
            )
        images = ops.to_channels(images, self.channels)
        sizes = image_sizes.cpu().long()
        uniforms = draw_uniforms(seed, epoch, indices, self.num_views)  # (B, V, U)
        views: List[torch.Tensor] = []
        first = 0
        for spec, count in self.plan:
            # View-major rows: row v * B + b is view (first + v) of sample b.
            u = uniforms[:, first : first + count].transpose(0, 1).reshape(count * batch, -1)
            source = torch.arange(batch).repeat(count)
            params = sample_view_params(spec, u, sizes[source, 0], sizes[source, 1])
            step = self._chunk_rows(spec, images.device, batch)
            for view in range(count):
                # One tensor per view (not one per group): each stays under glibc's 32 MiB mmap ceiling at
                # usual batch sizes, so its memory is reused from batch to batch instead of page-faulted anew.
                out = torch.empty((batch, self.channels, *spec.size), device=images.device)
                for start in range(0, batch, step):
                    stop = min(batch, start + step)
                    rows = slice(view * batch + start, view * batch + stop)
                    out[start:stop] = self._augment_rows(images, spec, source[rows], params, rows)
                views.append(out)
            first += count
        return views

    def _chunk_rows(self, spec, device: torch.device, total: int) -> int:
        """Views processed together: on CPU about a megabyte of floats, so every step works in cache."""
        if device.type != "cpu":
            return max(1, total)
        per_view = self.channels * spec.size[0] * spec.size[1]
        return max(1, min(total, CPU_CHUNK_ELEMENTS // per_view))

    def _augment_rows(self, images, spec, source, params, rows: slice) -> torch.Tensor:
        x = ops.resized_crops(images, source, params.boxes[rows], spec.size, params.flip[rows])
        x = ops.color_jitter(x, params.jitter[rows], params.factors[rows], params.order[rows],
                             [r is not None for r in spec.jitter_ranges])
        x = ops.grayscale(x, params.grayscale[rows])
        x = ops.gaussian_blur(x, params.blur[rows], params.sigma[rows], spec.blur_kernel)
        x = ops.solarize(x, params.solarize[rows], spec.solarize_threshold)
        if spec.mean is not None:
            x = ops.normalize_(x, spec.mean, spec.std)
        return x

    def __repr__(self) -> str:
        groups = ", ".join(f"{n} x {spec.size[0]}x{spec.size[1]}" for spec, n in self.plan)
        return f"BatchedViews({self.name}: {groups}, channels={self.channels})"
