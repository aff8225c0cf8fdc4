"""MAE: masked autoencoder pixel reconstruction.

He, Chen, Xie, Li, Dollár, Girshick, "Masked Autoencoders Are Scalable Vision
Learners", CVPR 2022, arXiv:2111.06377.

The maths is in functions on plain tensors; ``mae_loss`` reads the decoder's
predictions, the trunk's patch mask and the images from one training step.

>>> import torch
>>> images = torch.arange(8.0).reshape(1, 2, 2, 2)  # one 2-channel 2x2 image
>>> patchify(images, patch_size=1)  # 4 patches of 1 pixel x 2 channels
tensor([[[0., 4.],
         [1., 5.],
         [2., 6.],
         [3., 7.]]])
>>> target = torch.zeros(1, 2, 3)
>>> prediction = torch.ones(1, 2, 3)
>>> masked_reconstruction_loss(prediction, target, torch.tensor([[True, False]]))  # 1 masked patch, error 1
tensor(1.)
"""
from __future__ import annotations

from typing import Dict

import torch

from registry import register_loss
from ssl_ext.losses._views import autocast_off, check_number, full_precision, student_views
from ssl_ext.losses.base import SSLLoss
from ssl_ext.utils.distributed import all_reduce_sum, all_reduce_sum_with_grad


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, H·W/p², p²·C)``: patches in row-major grid order, each flattened
    as pixel rows, pixel columns, channels (MAE's and lightly's order)."""
    n, c, h, w = images.shape
    if h % patch_size or w % patch_size:
        raise ValueError(f"patchify: image {h}x{w} is not a multiple of patch_size {patch_size}")
    grid_h, grid_w = h // patch_size, w // patch_size
    patches = images.reshape(n, c, grid_h, patch_size, grid_w, patch_size).permute(0, 2, 4, 3, 5, 1)
    return patches.reshape(n, grid_h * grid_w, patch_size * patch_size * c)


def normalized_pixel_targets(patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """MAE's ``norm_pix_loss`` targets: each patch standardized by its own mean and (unbiased) variance."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + eps).sqrt()


def masked_reconstruction_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error per patch, averaged over the masked patches (``mask`` True) of the global batch."""
    per_patch = (prediction - target).pow(2).mean(dim=-1)
    weights = mask.to(per_patch.dtype)
    count = all_reduce_sum(weights.sum().detach())
    if float(count) == 0:
        raise ValueError("masked_reconstruction_loss: no masked patch in the batch; set the trunk's patch_drop > 0")
    return all_reduce_sum_with_grad((per_patch * weights).sum()) / count


@register_loss("mae_loss")
class MAELoss(SSLLoss):
    """Pixel reconstruction of the patches the encoder did not see.

    Per student view: the ``mae_decoder`` head's predictions ``(N, patches·p²·C)``, the
    trunk's ``patch_mask`` (``ModelOutput.extras["student_patch_mask"]``) and the view's
    images from the batch. Targets are ``patchify(images)``, standardized per patch when
    ``norm_pix_loss`` (MAE's default for its best results); the loss is the mean squared
    error on masked patches only, over the global batch, averaged over student views.
    No teacher. The masks come from the trunk (``vit`` with ``patch_drop: 0.75``).

    Args:
        patch_size: the trunk's patch size (16).
        norm_pix_loss: standardize each target patch (true).
    """

    loss_name = "mae_loss"

    def __init__(self, patch_size: int = 16, norm_pix_loss: bool = True) -> None:
        super().__init__()
        self.patch_size = check_number(patch_size, "patch_size", self.loss_name, minimum=1, integer=True)
        if not isinstance(norm_pix_loss, bool):
            raise ValueError(f"{self.loss_name}: norm_pix_loss must be true or false, got {norm_pix_loss!r}")
        self.norm_pix_loss = norm_pix_loss

    def forward(self, output, batch=None) -> Dict[str, torch.Tensor]:
        predictions = student_views(output, self.loss_name)
        masks = output.extras.get("student_patch_mask")
        if masks is None or len(masks) != len(predictions) or any(m is None for m in masks):
            raise ValueError(
                f"{self.loss_name}: the model output carries no patch mask; use the vit trunk with output: tokens and "
                f"patch_drop > 0 (e.g. 0.75) and the mae_decoder head"
            )
        if not batch or "views" not in batch:
            raise ValueError(f"{self.loss_name} reconstructs the input images: pass the batch (with 'views') to the loss")
        view_ids = list(output.student_views) if len(output.student_views or []) == len(predictions) else list(
            range(len(predictions)))
        total = 0.0
        with autocast_off(predictions[0]):
            for prediction, mask, view in zip(predictions, masks, view_ids):
                target = patchify(full_precision(batch["views"][view]).to(full_precision(prediction).dtype), self.patch_size)
                if self.norm_pix_loss:
                    target = normalized_pixel_targets(target)
                if prediction.dim() != 2 or prediction.shape[1] != target.shape[1] * target.shape[2] or mask.shape != target.shape[:2]:
                    raise ValueError(
                        f"{self.loss_name}: predictions {tuple(prediction.shape)} and mask {tuple(mask.shape)} do not "
                        f"match {target.shape[1]} patches of {target.shape[2]} values (patch_size={self.patch_size}); "
                        f"set LOSS.PARAMS.patch_size and the mae_decoder's img_size/patch_size/in_channels to the trunk's"
                    )
                prediction = full_precision(prediction).reshape(target.shape)
                total = total + masked_reconstruction_loss(prediction, target, mask)
        return {"loss": total / len(predictions)}
