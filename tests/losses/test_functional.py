"""ssl_ext.losses.functional: each function on hand-computable inputs, plus every ``>>>`` example in ssl_ext/losses."""
from __future__ import annotations

import doctest
import importlib
import inspect
import math
import pkgutil
import re

import pytest
import torch
import torch.nn.functional as F

import ssl_ext.losses
from ssl_ext.losses import functional

E = math.e


def f64(values):
    return torch.tensor(values, dtype=torch.float64)


def loss_modules():
    return sorted(info.name for info in pkgutil.walk_packages(ssl_ext.losses.__path__, prefix="ssl_ext.losses."))


# ------------------------------------------------------------------------------------ the examples
@pytest.mark.parametrize("module_name", loss_modules())
def test_docstring_examples_run(module_name):
    module = importlib.import_module(module_name)
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(module, module_name):
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, f"{results.failed} of the >>> examples in {module_name} failed (output above)"


@pytest.mark.parametrize("name", functional.__all__)
def test_every_function_cites_its_source_and_shows_an_example(name):
    doc = inspect.getdoc(getattr(functional, name))
    assert doc and ">>>" in doc, f"functional.{name} needs a docstring with a >>> example"
    assert re.search(r"arXiv:\d{4}\.\d{4,5}|\b(19|20)\d\d\b", doc), f"functional.{name}'s docstring cites no paper"


# ------------------------------------------------------------------------------------------ SimCLR
def test_nt_xent_by_hand():
    eye = torch.eye(2, dtype=torch.float64)
    # Positives aligned (logit 1/T = 2), the two negatives orthogonal (logit 0).
    assert functional.nt_xent(eye, 3 * eye, 0.5).item() == pytest.approx(math.log(1 + 2 * E**-2), rel=1e-14)
    # Views swapped: the positive is orthogonal (0), one negative is aligned (2), one orthogonal (0).
    assert functional.nt_xent(eye, eye.flip(0), 0.5).item() == pytest.approx(math.log(2 + E**2), rel=1e-14)


def test_nt_xent_gradcheck_and_bad_arguments():
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2))
    assert torch.autograd.gradcheck(lambda x, y: functional.nt_xent(x, y, 0.3), (a, b))
    with pytest.raises(ValueError, match="nt_xent: temperature"):
        functional.nt_xent(a, b, 0)
    with pytest.raises(ValueError, match="share one shape"):
        functional.nt_xent(a, b[:2], 0.1)


# ------------------------------------------------------------------------------ MSN / PMSN pieces
def test_prototype_log_probs_by_hand():
    prototypes = 5 * torch.eye(2, dtype=torch.float64)  # norms do not matter: cosines
    log_p = functional.prototype_log_probs(f64([[3.0, 0.0]]), prototypes, temperature=0.5)
    p1 = E**2 / (E**2 + 1)
    torch.testing.assert_close(log_p.exp(), f64([[p1, 1 - p1]]), rtol=0, atol=1e-15)
    smoothed = functional.prototype_log_probs(f64([[3.0, 0.0]]), prototypes, temperature=0.5, label_smoothing=0.2)
    torch.testing.assert_close(smoothed.exp(), f64([[0.8 * p1 + 0.1, 0.8 * (1 - p1) + 0.1]]), rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="prototypes has 3 columns, expected 2"):
        functional.prototype_log_probs(f64([[1.0, 0.0]]), torch.eye(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="label_smoothing"):
        functional.prototype_log_probs(f64([[1.0, 0.0]]), prototypes, label_smoothing=1.0)


def test_sharpen_by_hand():
    probs = f64([[0.6, 0.4]])
    torch.testing.assert_close(functional.sharpen(probs.log(), 0.5), f64([[0.36, 0.16]]) / 0.52)
    torch.testing.assert_close(functional.sharpen(probs.log(), 1.0), probs)
    with pytest.raises(ValueError, match="temperature"):
        functional.sharpen(probs.log(), -1)


def test_sinkhorn_one_iteration_by_hand():
    p = f64([[0.9, 0.1], [0.6, 0.4]])
    # Joint q = p.T / 2 = [[.45, .3], [.05, .2]]; prototype rows to 1/2 each: [[.3, .2], [.1, .4]];
    # sample columns to 1/2 each: [[.375, 1/6], [.125, 1/3]]; times N = 2, back to rows.
    torch.testing.assert_close(functional.sinkhorn(p, iterations=1), f64([[0.75, 0.25], [1 / 3, 2 / 3]]))
    # p's column means are (0.75, 0.25): with those prototype marginals p is already the balanced answer.
    torch.testing.assert_close(functional.sinkhorn(p, iterations=1, prototype_marginals=f64([0.75, 0.25])), p)
    torch.testing.assert_close(functional.sinkhorn(2 * p, iterations=0), p)  # 0 iterations: rows renormalized
    with pytest.raises(ValueError, match="prototype_marginals has shape"):
        functional.sinkhorn(p, 3, prototype_marginals=f64([1.0]))
    with pytest.raises(ValueError, match="iterations"):
        functional.sinkhorn(p, -1)


def test_msn_targets_by_hand_and_without_gradient():
    prototypes = torch.eye(2, dtype=torch.float64, requires_grad=True)
    targets = functional.msn_targets(torch.eye(2, dtype=torch.float64), prototypes, 1.0, 0.25, sinkhorn_iterations=3)
    t1 = E**4 / (E**4 + 1)  # softmax(1, 0) sharpened with T = 1/4; the 2x2 matrix is already balanced
    torch.testing.assert_close(targets, f64([[t1, 1 - t1], [1 - t1, t1]]))
    assert not targets.requires_grad
    skewed = functional.msn_targets(f64([[1.0, 0.0]]), prototypes, 1.0, 0.25, sinkhorn_iterations=0)
    torch.testing.assert_close(skewed, f64([[t1, 1 - t1]]))


def test_prototype_cross_entropy_by_hand():
    log_p = f64([[0.5, 0.5], [0.75, 0.25], [0.25, 0.75], [0.5, 0.5]]).log()  # 2 views x 2 images, view-major
    targets = f64([[1.0, 0.0], [0.5, 0.5]])
    # image 0: -log .5 (view 0), -log .25 (view 1); image 1: -(log .25 + log .75)/2, -log .5
    expected = (math.log(2) + math.log(4) + (math.log(4) + math.log(4 / 3)) / 2 + math.log(2)) / 4
    assert functional.prototype_cross_entropy(log_p, targets).item() == pytest.approx(expected, rel=1e-14)
    with pytest.raises(ValueError, match="not a multiple"):
        functional.prototype_cross_entropy(log_p[:3], targets)


def test_mean_prediction_value_and_gradient():
    probs = f64([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.5, 0.5]]).requires_grad_(True)
    p_bar = functional.mean_prediction(probs)
    torch.testing.assert_close(p_bar, f64([0.5, 0.5]), check_dtype=True)
    p_bar[0].backward()
    torch.testing.assert_close(probs.grad, f64([[0.25, 0.0]] * 4))


def test_entropies_by_hand():
    assert functional.entropy(f64([1.0, 0.0])).item() == 0.0  # 0 log 0 = 0, not NaN
    torch.testing.assert_close(functional.entropy(f64([[0.5, 0.5], [0.25, 0.75]])),
                               f64([math.log(2), -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))]))
    rows = f64([[0.5, 0.5], [0.25, 0.75]])
    expected = (math.log(2) - 0.25 * math.log(0.25) - 0.75 * math.log(0.75)) / 2
    assert functional.mean_entropy(rows.log()).item() == pytest.approx(expected, rel=1e-14)


def test_me_max_and_prior_kl_by_hand():
    p_bar = f64([0.7, 0.2, 0.1])
    expected = 0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1) + math.log(3)
    assert functional.me_max(p_bar).item() == pytest.approx(expected, rel=1e-14)
    uniform = torch.full((3,), 1 / 3, dtype=torch.float64)
    assert functional.prior_kl(p_bar, uniform).item() == pytest.approx(expected, rel=1e-13)  # PMSN(uniform) = MSN
    prior = f64([0.5, 0.3, 0.2])
    by_hand = 0.7 * math.log(0.7 / 0.5) + 0.2 * math.log(0.2 / 0.3) + 0.1 * math.log(0.1 / 0.2)
    assert functional.prior_kl(p_bar, prior).item() == pytest.approx(by_hand, rel=1e-14)
    assert functional.prior_kl(prior, prior).item() == pytest.approx(0.0, abs=1e-16)
    reverse = 0.5 * math.log(0.5 / 0.7) + 0.3 * math.log(0.3 / 0.2) + 0.2 * math.log(0.2 / 0.1)
    assert abs(by_hand - reverse) > 0.005  # KL(p̄ ‖ π), not lightly's KL(π ‖ p̄)
    # Gradient: d/dp̄_k KL(p̄ ‖ π) = log(p̄_k / π_k) + 1.
    p = p_bar.clone().requires_grad_(True)
    functional.prior_kl(p, prior).backward()
    torch.testing.assert_close(p.grad, (p_bar / prior).log() + 1)
    with pytest.raises(ValueError, match="prior has shape"):
        functional.prior_kl(p_bar, f64([0.5, 0.5]))


# ------------------------------------------------------------------------------------------ VICReg
def test_vicreg_pieces_by_hand():
    a = f64([[1.0, 1.0], [-1.0, -1.0]])
    assert functional.vicreg_invariance(a, a + f64([[0.5, 0.0], [0.0, 0.0]])).item() == pytest.approx(0.25 / 4)
    # cov = [[2, 2], [2, 2]]: off-diagonal squares 4 + 4, over D = 2.
    assert functional.vicreg_covariance(a).item() == pytest.approx(4.0, rel=1e-14)
    # std of both dimensions is sqrt(2 + eps) > 1: no hinge; with std_target 2: 2 - sqrt(2 + eps).
    assert functional.vicreg_variance(a).item() == 0.0
    assert functional.vicreg_variance(a, std_target=2.0).item() == pytest.approx(2 - math.sqrt(2 + 1e-4), rel=1e-14)
    terms = functional.vicreg_terms(a, a.clone(), std_target=2.0)
    assert terms["invariance"].item() == 0.0
    assert terms["variance"].item() == pytest.approx(2 - math.sqrt(2 + 1e-4), rel=1e-14)  # mean of the two views
    assert terms["covariance"].item() == pytest.approx(8.0, rel=1e-14)  # sum of the two views
    with pytest.raises(ValueError, match="at least 2 samples"):
        functional.vicreg_terms(a[:1], a[:1])
    with pytest.raises(ValueError, match="eps"):
        functional.vicreg_terms(a, a, eps=0)


# ----------------------------------------------------------------------------------- BYOL / MSBReg
def test_byol_regression_by_hand_and_stop_gradient():
    prediction = f64([[1.0, 0.0], [0.0, 2.0]]).requires_grad_(True)
    target = f64([[1.0, 1.0], [0.0, -1.0]]).requires_grad_(True)
    value = functional.byol_regression(prediction, target)  # rows: 2 - 2/sqrt(2), 2 + 2
    assert value.item() == pytest.approx((2 - math.sqrt(2) + 4) / 2, rel=1e-14)
    value.backward()
    assert target.grad is None and prediction.grad is not None


def test_multiview_centroid_by_hand():
    targets = [f64([[1.0, 0.0]]), f64([[0.0, 2.0]]), f64([[-3.0, 0.0]])]  # normalized sum (0, 1): centroid (0, 1/3)
    predictions = [f64([[0.0, 1.0]]), f64([[1.0, 0.0]])]
    assert functional.multiview_centroid(predictions, targets).item() == pytest.approx((0 + 2) / 2, rel=1e-14)
    # Leave one out, predictions of views 0 and 2: view 0's centroid omits target 0, (-1, 1)/2, and view 2's
    # omits target 2, (1, 1)/2; both at 45 degrees from their prediction.
    value = functional.multiview_centroid(predictions, targets, leave_one_out=True, prediction_views=[0, 2])
    assert value.item() == pytest.approx(2 - math.sqrt(2), rel=1e-14)
    with pytest.raises(ValueError, match="leave_one_out needs at least 2"):
        functional.multiview_centroid(predictions, targets[:1], leave_one_out=True)


def test_singular_value_loss_by_hand():
    raw = torch.diag(f64([3.0, 4.0]))
    assert functional.singular_value_loss(raw, normalize=False).item() == pytest.approx(-7.0, rel=1e-14)
    assert functional.singular_value_loss(raw).item() == pytest.approx(-2.0, rel=1e-14)  # rows normalized
    assert functional.singular_value_loss(torch.ones(3, 2, dtype=torch.float64), center=True).item() == \
        pytest.approx(0.0, abs=1e-14)
    # Gradient of -(σ1 + σ2) for diag(3, 4) without normalization: -I (the U V^T of the SVD).
    z = raw.clone().requires_grad_(True)
    functional.singular_value_loss(z, normalize=False).backward()
    torch.testing.assert_close(z.grad, -torch.eye(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="center must be True or False"):
        functional.singular_value_loss(raw, center=1)


def test_brownian_terms_by_hand():
    z = f64([[3.0, 4.0], [1.0, 0.0]]).requires_grad_(True)
    noise = f64([[1.0, 0.0], [0.0, 2.0]])
    value = functional.brownian_diffusive(z, noise)  # normalized rows (0.6, 0.8), (1, 0): <.,ε> = 0.6, 0
    assert value.item() == pytest.approx(0.3, rel=1e-14)
    raw = functional.brownian_diffusive(z, noise, normalize=False)
    raw.backward()
    torch.testing.assert_close(z.grad, noise / 2)  # the kick, over N = 2 rows
    torch.manual_seed(7)
    drawn = functional.brownian_noise(torch.zeros(4, 9, dtype=torch.float64), noise_std=3.0)
    torch.manual_seed(7)
    torch.testing.assert_close(drawn, torch.randn(4, 9, dtype=torch.float64) * 1.0)  # 3 / sqrt(9)
    torch.manual_seed(7)
    unscaled = functional.brownian_noise(torch.zeros(4, 9), noise_std=3.0, scale_by_dim=False)
    torch.manual_seed(7)
    torch.testing.assert_close(unscaled, torch.randn(4, 9) * 3.0)
    with pytest.raises(ValueError, match="noise_std"):
        functional.brownian_noise(z, noise_std=-1.0)


def test_registered_losses_compute_through_the_functions():
    # The registered modules hold no maths of their own: their terms are the functions' values.
    from registry import build_loss
    from loss_testing import make_output

    g = torch.Generator().manual_seed(1)
    a, b = (torch.randn(6, 4, generator=g, dtype=torch.float64) for _ in range(2))
    vicreg = build_loss({"NAME": "vicreg_loss"})(make_output([a, b]), {})
    for key, value in functional.vicreg_terms(a, b).items():
        assert torch.equal(vicreg[key], value), key
    simclr = build_loss({"NAME": "simclr_loss", "PARAMS": {"temperature": 0.2}})(make_output([a, b]), {})
    assert torch.equal(simclr["loss"], functional.nt_xent(a, b, 0.2))
    raw_b = F.normalize(b, dim=1)
    svd = build_loss({"NAME": "singular_value_loss"})(make_output([raw_b]), {})
    assert torch.equal(svd["loss"], functional.singular_value_loss(raw_b))
