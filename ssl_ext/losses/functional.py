"""Loss mathematics as functions on plain tensors.

The registered losses (``simclr_loss``, ``msn_loss``, ``pmsn_loss``, ``vicreg_loss``,
``byol_loss``, ``multiview_centroid_loss``, ``singular_value_loss``,
``brownian_diffusive_loss``, ``msbreg_loss``) unpack the trainer's ``ModelOutput``,
check it and call these functions; other frameworks and notebooks can call them
directly. Each function cites its paper and shows a ``>>>`` example that the test
suite runs (``tests/losses/test_functional.py``).

Global batch: inside an initialized ``torch.distributed`` process group, every
function takes *this rank's* rows and computes its statistic over the global batch
(all-gather / all-reduce that keep gradients, ``ssl_ext.utils.distributed``), so each
rank gets the loss of one process holding the whole batch and DDP's gradient averaging
reproduces that process's gradient. Without a process group they are plain tensor maths.

Precision is the caller's choice: the functions compute in the inputs' dtype (the
registered losses cast half-precision outputs to float32 and turn autocast off first).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Dict, Iterator, Optional, Sequence

import torch
import torch.nn.functional as F

from ssl_ext.losses._views import check_embeddings, check_number
from ssl_ext.utils.distributed import (
    all_gather_with_grad, all_reduce_mean_with_grad, all_reduce_sum, all_reduce_sum_with_grad, get_rank, get_world_size,
)

__all__ = [
    "nt_xent",
    "prototype_log_probs", "sharpen", "sinkhorn", "msn_targets", "prototype_cross_entropy", "mean_prediction",
    "entropy", "mean_entropy", "me_max", "prior_kl",
    "vicreg_invariance", "vicreg_variance", "vicreg_covariance", "vicreg_terms",
    "byol_regression", "multiview_centroid", "singular_value_loss", "brownian_noise", "brownian_diffusive",
]


def _check_temperature(value, name: str, function: str) -> float:
    return check_number(value, name, function, minimum=0, strict_min=True)


def _check_flag(value, name: str, function: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{function}: {name} must be True or False, got {value!r}")
    return value


def _check_rows(tensor: torch.Tensor, name: str, function: str, width: Optional[int] = None) -> None:
    if not isinstance(tensor, torch.Tensor) or tensor.dim() != 2:
        shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise ValueError(f"{function}: {name} must be a 2-D (rows, columns) tensor, got {shape}")
    if width is not None and tensor.shape[1] != width:
        raise ValueError(f"{function}: {name} has {tensor.shape[1]} columns, expected {width}")


# ------------------------------------------------------------------------------------------- SimCLR
def nt_xent(view_a: torch.Tensor, view_b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SimCLR's NT-Xent (normalized temperature-scaled cross-entropy) between two views.

    Chen, Kornblith, Norouzi, Hinton, "A Simple Framework for Contrastive Learning of
    Visual Representations", ICML 2020, arXiv:2002.05709.

    ``view_a[i]`` and ``view_b[i]`` are two views of image ``i`` (``(n, D)`` each). All
    ``2N`` L2-normalized embeddings of the global batch are anchors; an anchor's positive
    is the other view of its image and its ``2N - 2`` negatives are every other embedding
    of both views. Logits are cosine similarities divided by ``temperature``; the result
    is the mean cross-entropy over the ``2N`` anchors.

    >>> import torch
    >>> a = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    >>> b = torch.tensor([[5.0, 0.0], [0.0, 0.5]])
    >>> round(nt_xent(a, b, temperature=1.0).item(), 4)  # log(1 + 2/e): positive cos 1, negatives cos 0
    0.5514
    """
    temperature = _check_temperature(temperature, "temperature", "nt_xent")
    check_embeddings([view_a, view_b], "nt_xent")
    local_n = view_a.shape[0]
    anchors = F.normalize(torch.cat([view_a, view_b]), dim=1)
    global_a = all_gather_with_grad(anchors[:local_n])
    global_b = all_gather_with_grad(anchors[local_n:])
    global_n = global_a.shape[0]
    candidates = torch.cat([global_a, global_b])

    logits = anchors @ candidates.T / temperature
    offset = get_rank() * local_n
    rows = torch.arange(2 * local_n, device=anchors.device)
    sample = offset + rows % local_n
    is_view_b = rows >= local_n
    self_column = sample + is_view_b * global_n
    positive_column = sample + (~is_view_b) * global_n
    logits = logits.index_put((rows, self_column), torch.tensor(float("-inf"), dtype=logits.dtype, device=logits.device))
    local_loss = F.cross_entropy(logits, positive_column)
    return all_reduce_mean_with_grad(local_loss)


# ------------------------------------------------------------------------------ MSN / PMSN prototypes
def prototype_log_probs(
    embeddings: torch.Tensor, prototypes: torch.Tensor, temperature: float = 0.1, label_smoothing: float = 0.0
) -> torch.Tensor:
    """log p: MSN's soft prototype assignments ``softmax(cos(z, prototypes) / temperature)``, in log space.

    Assran et al., "Masked Siamese Networks for Label-Efficient Learning", ECCV 2022,
    arXiv:2204.07141 (Eq. 1).

    ``embeddings`` ``(n, D)``, ``prototypes`` ``(K, D)`` (neither needs unit norm);
    returns ``(n, K)``. ``label_smoothing = s`` mixes the prediction with the uniform
    distribution, ``(1 - s) p + s / K``, as MSN's smoothed one-hot prototype labels do.

    >>> import torch
    >>> log_p = prototype_log_probs(torch.tensor([[2.0, 0.0]]), torch.eye(2), temperature=1.0)
    >>> [round(v, 4) for v in log_p.exp()[0].tolist()]  # softmax(1, 0)
    [0.7311, 0.2689]
    """
    temperature = _check_temperature(temperature, "temperature", "prototype_log_probs")
    label_smoothing = check_number(
        label_smoothing, "label_smoothing", "prototype_log_probs", minimum=0, maximum=1, strict_max=True
    )
    _check_rows(embeddings, "embeddings", "prototype_log_probs")
    _check_rows(prototypes, "prototypes", "prototype_log_probs", width=embeddings.shape[1])
    # Scaling the (K, D) prototypes instead of the (n, K) logits saves a large division.
    logits = F.normalize(embeddings, dim=1) @ (F.normalize(prototypes, dim=1) / temperature).T
    log_probs = F.log_softmax(logits, dim=1)
    if label_smoothing > 0:
        log_probs = torch.logaddexp(
            log_probs + math.log1p(-label_smoothing),
            torch.full_like(log_probs, math.log(label_smoothing / prototypes.shape[0])),
        )
    return log_probs


def sharpen(log_probs: torch.Tensor, temperature: float = 0.25) -> torch.Tensor:
    """MSN's target sharpening ``p^(1/T) / Σ_k p_k^(1/T)``, from ``log p`` (rows).

    Assran et al., arXiv:2204.07141 (Sec. 3, target sharpening). Computed as
    ``softmax(log p / T)``: the same value without the underflow of ``p^(1/T)``.
    Returns probabilities; a lower ``temperature`` sharpens more.

    >>> import torch
    >>> probs = torch.tensor([[0.75, 0.25]])
    >>> [round(v, 4) for v in sharpen(probs.log(), temperature=0.5)[0].tolist()]  # (9, 1) / 10
    [0.9, 0.1]
    """
    temperature = _check_temperature(temperature, "temperature", "sharpen")
    return torch.softmax(log_probs / temperature, dim=-1)


@torch.no_grad()
def sinkhorn(
    assignments: torch.Tensor, iterations: int = 3, prototype_marginals: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Sinkhorn-Knopp balancing of positive soft assignments ``(n, K)`` over the global batch.

    Cuturi, "Sinkhorn Distances", NeurIPS 2013, arXiv:1306.0895; used for the targets of
    SwAV (arXiv:2006.09882) and MSN (arXiv:2204.07141).

    Seen as a joint ``(K, N)`` matrix over the global batch of ``N`` samples, each
    iteration first gives prototype ``k`` the total mass ``prototype_marginals[k]``
    (default ``1/K``; PMSN may pass its prior) and then gives each sample the mass
    ``1/N``. Prototype sums are all-reduced across ranks, sample sums are local. Returns
    the rows again, each summing to 1 (no gradient). ``iterations = 0`` only normalizes
    the rows. A prototype whose total mass underflows to 0 stays 0 instead of NaN.

    >>> import torch
    >>> q = sinkhorn(torch.tensor([[0.9, 0.1], [0.6, 0.4]]), iterations=100)
    >>> [round(v, 4) for v in q.sum(dim=0).tolist()]  # two equal clusters of N/K = 1 sample
    [1.0, 1.0]
    >>> [round(v, 4) for v in q.sum(dim=1).tolist()]  # every sample keeps mass 1
    [1.0, 1.0]
    """
    iterations = check_number(iterations, "iterations", "sinkhorn", minimum=0, integer=True)
    _check_rows(assignments, "assignments", "sinkhorn")
    q = assignments.detach().T.clone()
    num_prototypes, local_n = q.shape
    global_n = local_n * get_world_size()
    if prototype_marginals is None:
        prototype_marginals = torch.full((num_prototypes,), 1.0 / num_prototypes, dtype=q.dtype, device=q.device)
    elif prototype_marginals.shape != (num_prototypes,):
        raise ValueError(
            f"sinkhorn: prototype_marginals has shape {tuple(prototype_marginals.shape)}, expected ({num_prototypes},)"
        )
    marginals = prototype_marginals.to(dtype=q.dtype, device=q.device).unsqueeze(1)
    tiny = torch.finfo(q.dtype).tiny

    q /= all_reduce_sum(q.sum())
    for _ in range(iterations):
        q /= all_reduce_sum(q.sum(dim=1, keepdim=True)).clamp_min(tiny)
        q *= marginals
        q /= q.sum(dim=0, keepdim=True) * global_n
    return (q * global_n).T


@torch.no_grad()
def msn_targets(
    target_embeddings: torch.Tensor,
    prototypes: torch.Tensor,
    temperature: float = 0.1,
    sharpen_temperature: float = 0.25,
    sinkhorn_iterations: int = 3,
    label_smoothing: float = 0.0,
    prototype_marginals: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """MSN's targets: the target view's prototype assignments, sharpened, then Sinkhorn-balanced.

    Assran et al., arXiv:2204.07141 (Sec. 3). ``target_embeddings`` ``(n, D)`` are the
    EMA teacher's outputs of the target view; ``prototypes`` ``(K, D)``. Returns ``(n, K)``
    rows summing to 1, without gradient (the targets are a stop-gradient).
    ``sinkhorn_iterations = 0`` skips the balancing; ``prototype_marginals`` are the
    balanced cluster sizes (default uniform, MSN's choice).

    >>> import torch
    >>> t = msn_targets(torch.eye(2), torch.eye(2), temperature=1.0, sharpen_temperature=0.25)
    >>> [round(v, 4) for v in t[0].tolist()]  # (e^4, 1) / (e^4 + 1); already balanced
    [0.982, 0.018]
    """
    log_probs = prototype_log_probs(target_embeddings, prototypes, temperature, label_smoothing)
    sharpened = sharpen(log_probs, sharpen_temperature)
    sinkhorn_iterations = check_number(sinkhorn_iterations, "sinkhorn_iterations", "msn_targets", minimum=0, integer=True)
    if sinkhorn_iterations == 0:
        return sharpened
    return sinkhorn(sharpened, sinkhorn_iterations, prototype_marginals)


def prototype_cross_entropy(anchor_log_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """MSN's cross-entropy ``H(targets, p)`` averaged over every anchor row of the global batch.

    Assran et al., arXiv:2204.07141 (Eq. 2). ``anchor_log_probs`` ``(V * n, K)`` are the
    log-predictions of ``V`` anchor views stacked view-major (view 0's ``n`` rows first),
    all matched to the same ``targets`` ``(n, K)``.

    >>> import torch
    >>> log_p = torch.tensor([[0.5, 0.5], [0.75, 0.25]]).log()  # two anchor views of one image
    >>> round(prototype_cross_entropy(log_p, torch.tensor([[1.0, 0.0]])).item(), 4)  # (log 2 + log 4/3) / 2
    0.4904
    """
    _check_rows(anchor_log_probs, "anchor_log_probs", "prototype_cross_entropy")
    _check_rows(targets, "targets", "prototype_cross_entropy", width=anchor_log_probs.shape[1])
    local_n = targets.shape[0]
    if local_n == 0 or anchor_log_probs.shape[0] % local_n:
        raise ValueError(
            f"prototype_cross_entropy: anchor_log_probs has {anchor_log_probs.shape[0]} rows, not a multiple of the "
            f"{local_n} target rows (stack the anchor views view-major)"
        )
    num_views = anchor_log_probs.shape[0] // local_n
    # The views share one target, so sum their log p first.
    summed_log_probs = anchor_log_probs.view(num_views, local_n, -1).sum(dim=0)
    return all_reduce_mean_with_grad(-(targets * summed_log_probs).sum() / (num_views * local_n))


def mean_prediction(probs: torch.Tensor) -> torch.Tensor:
    """p̄: the mean of the rows of ``probs`` ``(n, K)`` over the global batch (with gradient).

    The quantity the hidden-prior paper is about: Assran et al., "The Hidden Uniform
    Cluster Prior in Self-Supervised Learning", ICLR 2023, arXiv:2210.07277.

    >>> import torch
    >>> mean_prediction(torch.tensor([[1.0, 0.0], [0.5, 0.5]])).tolist()
    [0.75, 0.25]
    """
    _check_rows(probs, "probs", "mean_prediction")
    global_rows = probs.shape[0] * get_world_size()
    return all_reduce_sum_with_grad(probs.sum(dim=0)) / global_rows


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy ``−Σ_k p_k log p_k`` along the last dimension (``0 log 0 = 0``).

    Shannon, "A Mathematical Theory of Communication", Bell System Technical Journal,
    1948. Logged as ``entropy_pbar`` (the entropy of p̄) by MSN and PMSN.

    >>> import torch
    >>> round(entropy(torch.tensor([0.5, 0.5])).item(), 4)  # log 2
    0.6931
    """
    return -torch.special.xlogy(probs, probs).sum(dim=-1)


def mean_entropy(log_probs: torch.Tensor) -> torch.Tensor:
    """Mean entropy of the predictions ``mean_i H(p_i)`` over the global batch, from ``log p`` ``(n, K)``.

    MSN's optional anchor-entropy term (``use_ent`` in the reference code): Assran et al.,
    arXiv:2204.07141. Minimizing it makes individual predictions confident.

    >>> import torch
    >>> round(mean_entropy(torch.tensor([[0.5, 0.5], [0.25, 0.75]]).log()).item(), 4)  # (log 2 + 0.5623) / 2
    0.6277
    """
    _check_rows(log_probs, "log_probs", "mean_entropy")
    return all_reduce_mean_with_grad(-(log_probs.exp() * log_probs).sum(dim=1).mean())


def me_max(mean_probs: torch.Tensor) -> torch.Tensor:
    """MSN's mean-entropy-maximization regularizer ``Σ_k p̄_k log p̄_k + log K`` = KL(p̄ ‖ uniform) ≥ 0.

    Assran et al., arXiv:2204.07141 (Eq. 3; written here with ``+ log K`` so that it is
    0 at the uniform p̄). Equals ``prior_kl(mean_probs, uniform)``.

    >>> import torch
    >>> round(me_max(torch.tensor([0.5, 0.5])).item(), 4)
    0.0
    >>> round(me_max(torch.tensor([0.75, 0.25])).item(), 4)  # log 2 - H(0.75, 0.25)
    0.1308
    """
    return torch.special.xlogy(mean_probs, mean_probs).sum() + math.log(mean_probs.shape[-1])


def prior_kl(mean_probs: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """PMSN's regularizer ``KL(p̄ ‖ π) = Σ_k p̄_k (log p̄_k − log π_k)``.

    Assran et al., "The Hidden Uniform Cluster Prior in Self-Supervised Learning", ICLR
    2023, arXiv:2210.07277 (Sec. 5). With the uniform prior it is MSN's ``me_max``.
    This is the paper's direction. lightly's ``PMSNLoss`` computes
    ``F.kl_div(p̄.log(), π, reduction="sum")`` = KL(π ‖ p̄), the other direction: equal
    at p̄ = π, different elsewhere.

    >>> import torch
    >>> p_bar, prior = torch.tensor([0.5, 0.5]), torch.tensor([0.75, 0.25])
    >>> round(prior_kl(p_bar, prior).item(), 4)  # 0.5 log(2/3) + 0.5 log 2
    0.1438
    """
    if prior.shape != mean_probs.shape:
        raise ValueError(f"prior_kl: prior has shape {tuple(prior.shape)}, mean_probs {tuple(mean_probs.shape)}")
    log_prior = prior.to(device=mean_probs.device, dtype=mean_probs.dtype).log()
    return (torch.special.xlogy(mean_probs, mean_probs) - mean_probs * log_prior).sum()


# ------------------------------------------------------------------------------------------- VICReg
def vicreg_invariance(z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
    """VICReg's invariance term: mean squared difference of paired embeddings over the global batch.

    Bardes, Ponce, LeCun, "VICReg", ICLR 2022, arXiv:2105.04906 (Eq. 5).

    >>> import torch
    >>> vicreg_invariance(torch.tensor([[1.0, 1.0]]), torch.tensor([[1.5, 1.0]])).item()  # 0.25 / 2 entries
    0.125
    """
    check_embeddings([z_a, z_b], "vicreg_invariance")
    return all_reduce_mean_with_grad(F.mse_loss(z_a, z_b))


def vicreg_variance(z: torch.Tensor, std_target: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """VICReg's variance hinge ``mean_j relu(γ − sqrt(Var(z_j) + ε))`` on the rows given.

    Bardes et al., arXiv:2105.04906 (Eq. 1). ``z`` ``(N, D)`` is the whole batch
    (``vicreg_terms`` gathers it across ranks first); the variance is unbiased.

    >>> import torch
    >>> z = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    >>> round(vicreg_variance(z).item(), 6)  # dim 0: std sqrt(2), no hinge; dim 1: 1 - sqrt(1e-4)
    0.495
    """
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(std_target - std).mean()


def vicreg_covariance(z: torch.Tensor) -> torch.Tensor:
    """VICReg's covariance term: squared off-diagonal covariances summed, divided by ``D``.

    Bardes et al., arXiv:2105.04906 (Eq. 3-4). ``z`` ``(N, D)`` is the whole batch.

    >>> import torch
    >>> vicreg_covariance(torch.tensor([[1.0, 1.0], [-1.0, -1.0]])).item()  # cov [[2, 2], [2, 2]]: (4 + 4) / 2
    4.0
    """
    n, dim = z.shape
    centered = z - z.mean(dim=0)
    cov = centered.T @ centered / (n - 1)
    off_diagonal = cov - torch.diag(torch.diagonal(cov))
    return off_diagonal.pow(2).sum() / dim


def vicreg_terms(
    z_a: torch.Tensor, z_b: torch.Tensor, std_target: float = 1.0, eps: float = 1e-4
) -> Dict[str, torch.Tensor]:
    """VICReg's three terms for two views, with variance and covariance over the global batch.

    Bardes, Ponce, LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
    Self-Supervised Learning", ICLR 2022, arXiv:2105.04906.

    Returns ``invariance`` (``vicreg_invariance``), ``variance`` (the two views' hinges
    averaged) and ``covariance`` (the two views' terms summed), the convention of the
    paper's reference code. The loss is ``λ·invariance + μ·variance + ν·covariance``
    (25, 25, 1 in the paper).

    >>> import torch
    >>> z = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    >>> {name: round(value.item(), 6) for name, value in vicreg_terms(z, z.clone()).items()}
    {'invariance': 0.0, 'variance': 0.495, 'covariance': 0.0}
    """
    std_target = check_number(std_target, "std_target", "vicreg_terms", minimum=0, strict_min=True)
    eps = check_number(eps, "eps", "vicreg_terms", minimum=0, strict_min=True)
    invariance = vicreg_invariance(z_a, z_b)
    global_a, global_b = all_gather_with_grad(z_a), all_gather_with_grad(z_b)
    if global_a.shape[0] < 2:
        raise ValueError(
            f"VICReg needs a global batch of at least 2 samples for its variance term, got {global_a.shape[0]}"
        )
    variance = (vicreg_variance(global_a, std_target, eps) + vicreg_variance(global_b, std_target, eps)) / 2
    covariance = vicreg_covariance(global_a) + vicreg_covariance(global_b)
    return {"invariance": invariance, "variance": variance, "covariance": covariance}


# ----------------------------------------------------------------------------------- BYOL / MSBReg
def byol_regression(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BYOL's regression loss ``2 − 2·cos(q, sg(z'))`` averaged over the global batch.

    Grill et al., "Bootstrap your own latent", NeurIPS 2020, arXiv:2006.07733 (Eq. 2).
    ``prediction`` is the online network's predictor output for one view, ``target`` the
    EMA target network's projection of the *other* view; no gradient flows into
    ``target``. BYOL's loss is the sum over both directions (range [0, 8]).
    Equals ``2 + 2 · lightly.loss.NegativeCosineSimilarity()(prediction, target)``.

    >>> import torch
    >>> byol_regression(torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 0.5]])).item()  # orthogonal
    2.0
    >>> byol_regression(torch.tensor([[3.0, 0.0]]), torch.tensor([[-1.0, 0.0]])).item()  # opposite
    4.0
    """
    check_embeddings([prediction, target], "byol_regression", "prediction/target")
    cosine = F.cosine_similarity(prediction, target.detach(), dim=1)
    return all_reduce_mean_with_grad((2 - 2 * cosine).mean())


def multiview_centroid(
    predictions: Sequence[torch.Tensor],
    targets: Sequence[torch.Tensor],
    leave_one_out: bool = False,
    prediction_views: Optional[Sequence[int]] = None,
    target_views: Optional[Sequence[int]] = None,
) -> torch.Tensor:
    """MSBReg's multiview centroid loss: each online view pulled toward the targets' centroid.

    Moon, Buracas, Park, Kim, Canny, "An Embedding-Dynamic Approach to Self-supervised
    Learning", arXiv:2207.03552 (the attractive force).

    For image ``i`` with ``K`` views the centroid is ``c_i = mean_k normalize(t_{k,i})``
    (stop-gradient) and online view ``k`` contributes ``2 − 2·cos(q_{k,i}, c_i)``; the
    result is the mean over views and the global batch. ``leave_one_out``: view ``k``'s
    centroid omits target view ``k`` (views matched by ``prediction_views`` /
    ``target_views``, default positions), which with ``K = 2`` is half of BYOL's loss.

    >>> import torch
    >>> predictions = [torch.tensor([[1.0, 0.0]]), torch.tensor([[3.0, 3.0]])]
    >>> targets = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])]  # centroid (0.5, 0.5)
    >>> round(multiview_centroid(predictions, targets).item(), 4)  # ((2 - sqrt 2) + 0) / 2
    0.2929
    """
    name = "multiview_centroid"
    leave_one_out = _check_flag(leave_one_out, "leave_one_out", name)
    predictions, targets = list(predictions), list(targets)
    check_embeddings(predictions + targets, name, "prediction/target")
    prediction_views = list(range(len(predictions))) if prediction_views is None else list(prediction_views)
    target_views = list(range(len(targets))) if target_views is None else list(target_views)
    if len(prediction_views) != len(predictions) or len(target_views) != len(targets):
        raise ValueError(f"{name}: give one view index per prediction and per target")
    if leave_one_out and len(targets) < 2:
        raise ValueError(f"{name}: leave_one_out needs at least 2 target views, got {len(targets)}")
    normalized_targets = torch.stack([F.normalize(t.detach(), dim=1) for t in targets])
    target_sum = normalized_targets.sum(dim=0)
    total = 0
    for view, prediction in zip(prediction_views, predictions):
        centroid_sum, count = target_sum, len(targets)
        if leave_one_out and view in target_views:
            centroid_sum = target_sum - normalized_targets[target_views.index(view)]
            count -= 1
        cosine = F.cosine_similarity(prediction, centroid_sum / count, dim=1)
        total = total + (2 - 2 * cosine).mean()
    return all_reduce_mean_with_grad(total / len(predictions))


@contextmanager
def _single_threaded_on_cpu(tensor: torch.Tensor) -> Iterator[None]:
    """Run the enclosed CPU LAPACK call on one thread, restoring the thread count after.

    The SVD of a ``(N, D)`` batch bidiagonalizes it in ~D small steps, each ending in
    a thread barrier. When the cores are shared (other processes, several DDP ranks
    on one node) every barrier waits for a scheduler tick: on 2 busy cores a
    1024 x 256 SVD took ~4 s with 2 threads and ~30 ms with 1
    (benchmarks/loss_speed.py). On idle cores a second thread could at best halve
    those ~30 ms, which is small next to a training step; the singular values agree
    to rounding (float32: within an ulp; float64: ~1e-13).
    """
    threads = torch.get_num_threads()
    if tensor.device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def singular_value_loss(embeddings: torch.Tensor, normalize: bool = True, center: bool = False) -> torch.Tensor:
    """MSBReg's singular value loss ``−Σ_j σ_j(Z)``: minus the nuclear norm of the global batch.

    Moon et al., arXiv:2207.03552 (the global dispersive force). ``Z`` is the
    ``(N_global, D)`` matrix of one view's embeddings, rows L2-normalized when
    ``normalize``. Unit rows fix ``Σ σ_j² = N``, so maximizing ``Σ σ_j`` spreads the
    spectrum evenly: ``−sqrt(N)`` for a collapsed batch, ``−N`` for orthonormal rows.
    ``center`` subtracts the global mean embedding first (not the paper's choice).

    >>> import torch
    >>> round(singular_value_loss(torch.ones(4, 6)).item(), 4)  # collapsed: one singular value sqrt(4)
    -2.0
    >>> round(singular_value_loss(3 * torch.eye(4)).item(), 4)  # orthonormal rows: four singular values 1
    -4.0
    """
    normalize = _check_flag(normalize, "normalize", "singular_value_loss")
    center = _check_flag(center, "center", "singular_value_loss")
    _check_rows(embeddings, "embeddings", "singular_value_loss")
    z = F.normalize(embeddings, dim=1) if normalize else embeddings
    z = all_gather_with_grad(z)
    if center:
        z = z - z.mean(dim=0, keepdim=True)
    with _single_threaded_on_cpu(z):
        singular_values = torch.linalg.svdvals(z)
    return -singular_values.sum()


def brownian_noise(like: torch.Tensor, noise_std: float = 1.0, scale_by_dim: bool = True) -> torch.Tensor:
    """Gaussian kicks ``ε`` for ``brownian_diffusive``, shaped, typed and placed like ``like``.

    Moon et al., arXiv:2207.03552 (the Brownian diffusive loss's random motion).

    ``ε ~ N(0, noise_std² / D · I)`` with ``scale_by_dim`` (so ``‖ε‖ ≈ noise_std`` for any
    width ``D``), else ``N(0, noise_std² · I)``. Drawn from torch's global generator,
    which the trainer reseeds every step (exact resume).

    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> noise = brownian_noise(torch.zeros(10000, 100), noise_std=2.0)
    >>> round(noise.norm(dim=1).mean().item(), 1)
    2.0
    """
    noise_std = check_number(noise_std, "noise_std", "brownian_noise", minimum=0)
    scale_by_dim = _check_flag(scale_by_dim, "scale_by_dim", "brownian_noise")
    std = noise_std / math.sqrt(like.shape[1]) if scale_by_dim else noise_std
    return torch.randn(like.shape, dtype=like.dtype, device=like.device) * std


def brownian_diffusive(embeddings: torch.Tensor, noise: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """MSBReg's Brownian diffusive loss ``mean_i ⟨ẑ_i, ε_i⟩`` over the global batch.

    Moon et al., arXiv:2207.03552 (the local dispersive force). Its gradient w.r.t.
    ``ẑ_i`` is ``ε_i / N``: a zero-mean random kick per sample (``brownian_noise`` draws
    a fresh one per step); the value itself is noise around zero. ``ẑ`` is the
    L2-normalized embedding when ``normalize`` (a random walk on the sphere).

    >>> import torch
    >>> round(brownian_diffusive(torch.tensor([[3.0, 4.0]]), noise=torch.tensor([[1.0, 0.0]])).item(), 4)
    0.6
    """
    normalize = _check_flag(normalize, "normalize", "brownian_diffusive")
    check_embeddings([embeddings, noise], "brownian_diffusive", "embeddings/noise")
    z = F.normalize(embeddings, dim=1) if normalize else embeddings
    return all_reduce_mean_with_grad((z * noise).sum(dim=1).mean())
