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

The same module holds the statistics the ``prior_monitor`` training hook logs during
training (:func:`usage_statistics`), so online and offline numbers come from one place.

The prototypes live in the loss module, so they are read from the checkpoint's loss
state (``"loss"`` entry of an ssl_ext training checkpoint; the parameter's name ends
in ``prototypes``, also when MSN is the base of ``msbreg_loss``).
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional

import numpy as np
import torch
from torch import nn

from ssl_ext.analysis.power_law import fit_exponent_mle, kl_divergence, uniform_noise_floor
from ssl_ext.engine import checkpoint_keys
from ssl_ext.utils.io import torch_load


def find_prototype_loss(loss: Any) -> Optional[nn.Module]:
    """The (sub)module of ``loss`` exposing ``last_mean_probs`` and ``prior`` (MSN/PMSN, or an MSBReg base), or None."""
    modules = loss.modules() if hasattr(loss, "modules") else [loss]
    for module in modules:
        if hasattr(module, "last_mean_probs") and getattr(module, "prior", None) is not None:
            return module
    return None


def usage_statistics(
    mean_probs: np.ndarray, prior: np.ndarray, usage_threshold: float, num_samples: Optional[int] = None
) -> Dict[str, float]:
    """Scalars comparing the sorted prototype usage p̄ with the prior π (both ``(K,)``, π sorted descending).

    * ``prior/kl_sorted``: KL(sort(p̄) ‖ π), whether the *shape* of the usage matches the
      prior, whichever prototypes hold which mass (the loss's own KL pairs prototype k with π_k);
    * ``prior/entropy``, ``prior/perplexity`` of p̄ and ``prior/prior_entropy`` of π;
    * ``prior/prototypes_in_use``: prototypes holding at least ``usage_threshold / K`` of the mass;
    * ``prior/max_mass``: the largest prototype's share;
    * ``prior/tau_mle``: the power-law exponent of sorted p̄, the maximum-likelihood estimator
      of :func:`ssl_ext.analysis.power_law.fit_exponent_mle` (the same one the offline cluster
      analysis reports as ``tau_mle``), and ``prior/prior_tau_mle`` of π;
    * ``prior/tau_mle_uniform_floor`` (when ``num_samples`` is given): the exponent that sorting
      alone gives ``num_samples`` draws from uniform clusters (95th percentile,
      :func:`~ssl_ext.analysis.power_law.uniform_noise_floor`). A soft p̄ fluctuates less than
      hard counts, so this floor is conservative: ``tau_mle`` above it is real structure.
    """
    k = mean_probs.size
    sorted_probs = np.sort(np.asarray(mean_probs, dtype=np.float64))[::-1]
    prior = np.asarray(prior, dtype=np.float64)
    positive = sorted_probs[sorted_probs > 0]
    entropy = float(-(positive * np.log(positive)).sum())
    stats = {
        "prior/kl_sorted": kl_divergence(sorted_probs, prior),
        "prior/entropy": entropy,
        "prior/prior_entropy": float(-(prior * np.log(prior)).sum()),
        "prior/perplexity": math.exp(entropy),
        "prior/prototypes_in_use": int((sorted_probs >= usage_threshold / k).sum()),
        "prior/max_mass": float(sorted_probs[0]),
        "prior/tau_mle": fit_exponent_mle(sorted_probs),
        "prior/prior_tau_mle": fit_exponent_mle(prior),
    }
    if num_samples:
        stats["prior/tau_mle_uniform_floor"] = uniform_noise_floor(int(num_samples), k)
    return stats


def prototype_module(loss: nn.Module) -> Optional[nn.Module]:
    """The (sub)module of ``loss`` that holds prototypes and a prior (MSN, PMSN, MSBReg over them), or None."""
    module = find_prototype_loss(loss)
    if module is None or not isinstance(getattr(module, "prototypes", None), torch.Tensor):
        return None
    return module


class MissingLossState(ValueError):
    """The checkpoint holds no loss state, so no prototypes (a plain state dict, or another code base's file)."""


def load_loss_state(loss: nn.Module, checkpoint_path: str) -> None:
    """Fill ``loss`` (built from the run's config) with the loss state of an ssl_ext checkpoint."""
    checkpoint = torch_load(checkpoint_path)
    state = checkpoint.get(checkpoint_keys.LOSS) if isinstance(checkpoint, dict) else None
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
