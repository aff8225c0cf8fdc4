"""Prototype usage of MSN / PMSN models: how much of the data each learned prototype takes.

Assran et al., "The Hidden Uniform Cluster Prior in Self-Supervised Learning", ICLR
2023, arXiv:2210.07277: MSN's me-max term pushes the mean prototype assignment p̄ to
uniform, PMSN's KL term pushes it to a prior π (a power law by default). This module
measures the usage a trained model ends up with, on images of a split, seen through
the loss's own prediction function (cosine to the prototypes over the loss's
temperature, softmax, label smoothing) so it is exactly the p̄ the regularizer saw,
except that the images are un-augmented and un-masked:

* ``soft`` usage: p̄ = mean over images of the softmax assignment (what the regularizer constrains);
* ``hard`` usage: how many images have each prototype as their most likely one (cluster sizes).

The prototypes live in the loss module, so they are read from the checkpoint's loss
state (``"loss"`` entry of an ssl_ext training checkpoint; the parameter's name ends
in ``prototypes``, also when MSN is the base of ``msbreg_loss``).
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np
import torch
from torch import nn

from ssl_ext.utils.io import torch_load


def prototype_module(loss: nn.Module) -> Optional[nn.Module]:
    """The (sub)module of ``loss`` that holds prototypes and a prior (MSN, PMSN, MSBReg over them), or None."""
    from ssl_ext.hooks.prior_monitor import find_prototype_loss

    module = find_prototype_loss(loss)
    if module is None or not isinstance(getattr(module, "prototypes", None), torch.Tensor):
        return None
    return module


class MissingLossState(ValueError):
    """The checkpoint holds no loss state, so no prototypes (a plain state dict, or another code base's file)."""


def load_loss_state(loss: nn.Module, checkpoint_path: str) -> None:
    """Fill ``loss`` (built from the run's config) with the loss state of an ssl_ext checkpoint."""
    checkpoint = torch_load(checkpoint_path)
    state = checkpoint.get("loss") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not state:
        keys = sorted(map(str, checkpoint))[:20] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise MissingLossState(
            f"{checkpoint_path} has no loss state (top-level keys: {keys}): prototype usage needs an ssl_ext training "
            f"checkpoint of an MSN/PMSN run; set config.ANALYSIS.PROTOTYPES=never to analyse only the features."
        )
    try:
        loss.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(
            f"The loss state in {checkpoint_path} does not fit config.LOSS ({type(loss).__name__}): {exc}. "
            f"Use the run's own train_config.yaml so LOSS.PARAMS (num_prototypes, embed_dim) match."
        ) from None


@torch.no_grad()
def prototype_usage(embeddings: torch.Tensor, module: nn.Module, chunk: int = 8192) -> Dict[str, Any]:
    """Soft (p̄) and hard (argmax counts) usage of ``module``'s prototypes by ``embeddings`` (N, D).

    Returns ``soft`` (K,) summing to 1, ``hard`` (K,) integer counts, ``assignments``
    (N,) the argmax prototype of each embedding, and ``prior`` (K,) the loss's prior.
    """
    prototypes = module.prototypes.detach().float()
    if embeddings.ndim != 2 or embeddings.shape[1] != prototypes.shape[1]:
        raise ValueError(
            f"prototype_usage: embeddings of shape {tuple(embeddings.shape)} do not match prototypes of width "
            f"{prototypes.shape[1]}: the heads of config.MODEL.HEADS must produce the prototype space"
        )
    total = torch.zeros(prototypes.shape[0], dtype=torch.float64)
    assignments = []
    for start in range(0, embeddings.shape[0], chunk):
        log_p = module.log_predictions(embeddings[start:start + chunk].float(), prototypes)
        total += log_p.exp().sum(dim=0).double()
        assignments.append(log_p.argmax(dim=1))
    assigned = torch.cat(assignments).numpy().astype(np.int64)
    prior = getattr(module, "prior", None)
    return {
        "soft": (total / embeddings.shape[0]).numpy(),
        "hard": np.bincount(assigned, minlength=prototypes.shape[0]),
        "assignments": assigned,
        "prior": prior.detach().double().cpu().numpy() if isinstance(prior, torch.Tensor) else None,
    }
