"""ssl_ext's losses against lightly 1.6.0, the numerical reference, in float64: values AND gradients.

lightly is test-only (``tools/setup_env.sh --test`` installs ``lightly==1.6.0 --no-deps``;
``import lightly.loss`` needs only torch and torchvision). Outside CI a missing lightly
skips these tests with the install command; with CI=true it fails them.

Agreement is ``max |ours - lightly| <= 1e-10`` over the loss value and every input gradient:
* MSN (anchors, prototypes), VICReg, NT-Xent: the same quantity on both sides;
* BYOL: lightly's BYOL is ``0.5 * (ncs(p0, z1) + ncs(p1, z0))`` with
  ``ncs = NegativeCosineSimilarity``; ours is ``Σ (2 - 2 cos)``, i.e. exactly ``4 + 4 * lightly``;
* PMSN: ssl_ext's regularizer is KL(p̄ ‖ π), lightly's is KL(π ‖ p̄). Flipping lightly's
  ``F.kl_div`` arguments gives ours to 1e-10; unflipped, the difference is exactly the
  difference of the two KL directions.
"""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from ssl_ext.losses import functional
from ssl_ext.losses.byol import BYOLLoss
from ssl_ext.losses.msn import MSNLoss
from ssl_ext.losses.pmsn import PMSNLoss
from ssl_ext.losses.simclr import SimCLRLoss
from ssl_ext.losses.vicreg import VICRegLoss

LIGHTLY_VERSION = "1.6.0"
TOLERANCE = 1e-10


@pytest.fixture(scope="module")
def lightly_loss():
    try:
        import lightly
        import lightly.loss
    except ImportError as exc:
        message = f"lightly {LIGHTLY_VERSION} is not installed ({exc}); run tools/setup_env.sh --test"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {message}")
        pytest.skip(message)
    assert lightly.__version__ == LIGHTLY_VERSION, f"the reference is lightly {LIGHTLY_VERSION}, found {lightly.__version__}"
    return lightly.loss


def randn(generator, *shape, scale=1.0):
    return (torch.randn(*shape, generator=generator, dtype=torch.float64) * scale).requires_grad_(True)


def value_and_grads(fn, inputs):
    """``fn()``'s value and its gradients w.r.t. ``inputs`` (fresh graph, nothing accumulated)."""
    value = fn()
    grads = torch.autograd.grad(value, inputs)
    return value.detach(), [g.detach() for g in grads]


def max_abs_difference(ours, theirs, ours_scale=1.0, ours_offset=0.0):
    """max |ours - (offset + scale * theirs)| over the value and every gradient."""
    (value, grads), (ref_value, ref_grads) = ours, theirs
    diffs = [(value - (ours_offset + ours_scale * ref_value)).abs().max()]
    diffs += [(g - ours_scale * r).abs().max() for g, r in zip(grads, ref_grads)]
    return float(max(diffs))


# ----------------------------------------------------------------------------------- MSN and PMSN
def msn_inputs(seed, views=3, n=8, dim=6):
    g = torch.Generator().manual_seed(seed)
    anchors = [randn(g, n, dim) for _ in range(views)]
    target = randn(g, n, dim).detach()
    return anchors, target


def ssl_ext_prototype_loss(loss, anchors, target):
    def fn():
        return loss.forward_tensors(student=anchors, teacher=[target])["loss"]

    return value_and_grads(fn, [*anchors, loss.prototypes])


def lightly_prototype_loss(criterion, anchors, target, prototypes, sharpen_temperature):
    prototypes = prototypes.detach().clone().requires_grad_(True)

    def fn():
        return criterion(torch.cat(anchors), target, prototypes, target_sharpen_temperature=sharpen_temperature)

    return value_and_grads(fn, [*anchors, prototypes])


@pytest.mark.parametrize("sinkhorn_iterations,regularization_weight", [(3, 1.0), (0, 0.5), (5, 2.0)])
def test_msn_matches_lightly(lightly_loss, sinkhorn_iterations, regularization_weight):
    settings = dict(temperature=0.1, sinkhorn_iterations=sinkhorn_iterations, regularization_weight=regularization_weight)
    ours = MSNLoss(num_prototypes=10, embed_dim=6, sharpen_temperature=0.25, **settings).double()
    anchors, target = msn_inputs(0)
    theirs = lightly_loss.MSNLoss(**settings)
    difference = max_abs_difference(
        ssl_ext_prototype_loss(ours, anchors, target),
        lightly_prototype_loss(theirs, anchors, target, ours.prototypes, 0.25),
    )
    assert difference <= TOLERANCE


def kl_prior_flipped(lightly_loss, prior):
    """lightly's PMSN with its KL arguments swapped: F.kl_div(log π, p̄) = KL(p̄ ‖ π), ssl_ext's direction."""

    class FlippedPMSN(lightly_loss.PMSNCustomLoss):
        def regularization_loss(self, mean_anchor_probs):
            return F.kl_div(input=prior.log(), target=mean_anchor_probs, reduction="sum")

    return FlippedPMSN


@pytest.mark.parametrize("tau", [0.25, 1.0])
def test_pmsn_matches_lightly_once_the_kl_direction_is_flipped(lightly_loss, tau):
    settings = dict(temperature=0.1, sinkhorn_iterations=3, regularization_weight=1.5)
    ours = PMSNLoss(num_prototypes=10, embed_dim=6, sharpen_temperature=0.25,
                    prior={"NAME": "power_law", "PARAMS": {"tau": tau}}, **settings).double()
    prior = ours.prior.double()
    anchors, target = msn_inputs(1)
    ours_result = ssl_ext_prototype_loss(ours, anchors, target)

    flipped = kl_prior_flipped(lightly_loss, prior)(target_distribution=lambda p: prior, **settings)
    assert max_abs_difference(ours_result, lightly_prototype_loss(flipped, anchors, target, ours.prototypes, 0.25)) \
        <= TOLERANCE

    # lightly as shipped, KL(π ‖ p̄) with its own float32 power law: ours differs by exactly
    # λ (KL(p̄ ‖ π) - KL(π ‖ p̄)); float32 π limits this comparison to ~1e-7.
    shipped = lightly_loss.PMSNLoss(power_law_exponent=tau, **settings)
    with pytest.warns(UserWarning):  # lightly builds its prior with torch.tensor(tensor)
        lightly_value = lightly_prototype_loss(shipped, anchors, target, ours.prototypes, 0.25)[0]
    p_bar = ours.last_mean_probs
    reverse_kl = (prior * (prior.log() - p_bar.log())).sum()
    forward_kl = functional.prior_kl(p_bar, prior)
    assert abs(forward_kl - reverse_kl) > 1e-3  # the directions really differ on this input
    torch.testing.assert_close(ours_result[0], lightly_value + 1.5 * (forward_kl - reverse_kl), rtol=0, atol=1e-6)


def test_pmsn_uniform_prior_equals_lightly_msn(lightly_loss):
    # KL(p̄ ‖ uniform) is MSN's me-max: PMSN with the uniform prior is lightly's MSN.
    settings = dict(temperature=0.1, sinkhorn_iterations=3, regularization_weight=1.0)
    ours = PMSNLoss(num_prototypes=10, embed_dim=6, prior={"NAME": "uniform"}, **settings).double()
    anchors, target = msn_inputs(2)
    difference = max_abs_difference(
        ssl_ext_prototype_loss(ours, anchors, target),
        lightly_prototype_loss(lightly_loss.MSNLoss(**settings), anchors, target, ours.prototypes, 0.25),
    )
    assert difference <= TOLERANCE


# ---------------------------------------------------------------------------- VICReg, NT-Xent, BYOL
@pytest.mark.parametrize("scale", [0.3, 2.0])  # 0.3: the variance hinge is active in every dimension
def test_vicreg_matches_lightly(lightly_loss, scale):
    g = torch.Generator().manual_seed(3)
    z_a, z_b = randn(g, 16, 8, scale=scale), randn(g, 16, 8, scale=scale)
    ours = value_and_grads(lambda: VICRegLoss().forward_tensors(student=[z_a, z_b])["loss"], [z_a, z_b])
    criterion = lightly_loss.VICRegLoss(lambda_param=25.0, mu_param=25.0, nu_param=1.0, eps=1e-4)
    theirs = value_and_grads(lambda: criterion(z_a, z_b), [z_a, z_b])
    assert max_abs_difference(ours, theirs) <= TOLERANCE


@pytest.mark.parametrize("temperature", [0.1, 0.5, 2.0])
def test_nt_xent_matches_lightly(lightly_loss, temperature):
    g = torch.Generator().manual_seed(4)
    view_a, view_b = randn(g, 12, 5), randn(g, 12, 5)
    theirs = value_and_grads(lambda: lightly_loss.NTXentLoss(temperature=temperature)(view_a, view_b), [view_a, view_b])
    registered = value_and_grads(
        lambda: SimCLRLoss(temperature=temperature).forward_tensors(student=[view_a, view_b])["loss"], [view_a, view_b]
    )
    plain = value_and_grads(lambda: functional.nt_xent(view_a, view_b, temperature), [view_a, view_b])
    assert max_abs_difference(registered, theirs) <= TOLERANCE
    assert max_abs_difference(plain, theirs) <= TOLERANCE


def test_byol_matches_lightly_negative_cosine_similarity(lightly_loss):
    g = torch.Generator().manual_seed(5)
    p0, p1 = randn(g, 10, 7), randn(g, 10, 7)  # online predictions of views 0 and 1
    z0, z1 = randn(g, 10, 7), randn(g, 10, 7)  # target projections of views 0 and 1
    ncs = lightly_loss.NegativeCosineSimilarity()
    theirs = value_and_grads(lambda: 0.5 * (ncs(p0, z1.detach()) + ncs(p1, z0.detach())), [p0, p1])
    ours = value_and_grads(
        lambda: BYOLLoss().forward_tensors(student=[p0, p1], teacher=[z0, z1])["loss"], [p0, p1]
    )
    # Σ (2 - 2 cos) over both directions = 4 + 4 * lightly's averaged negative cosine.
    assert max_abs_difference(ours, theirs, ours_scale=4.0, ours_offset=4.0) <= TOLERANCE
    one_direction = value_and_grads(lambda: functional.byol_regression(p0, z1), [p0])
    assert max_abs_difference(one_direction, value_and_grads(lambda: ncs(p0, z1.detach()), [p0]),
                              ours_scale=2.0, ours_offset=2.0) <= TOLERANCE
