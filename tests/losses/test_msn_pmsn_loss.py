import math

import pytest
import torch
import torch.nn.functional as F

from registry import build_loss
from loss_testing import make_output
from ssl_ext.losses.sinkhorn import sinkhorn_knopp

E = math.e


def prototype_loss(name, **params):
    return build_loss({"NAME": name, "PARAMS": params}).to(torch.float64)


def symmetric_case(loss):
    """Prototypes e1, e2 and anchors = targets = [e1, e2]: p̄ is exactly uniform."""
    with torch.no_grad():
        loss.prototypes.copy_(torch.eye(2, dtype=torch.float64))
    views = torch.eye(2, dtype=torch.float64)
    return make_output([views.clone()], [views.clone()])


def test_msn_by_hand():
    loss = prototype_loss("msn_loss", num_prototypes=2, embed_dim=2, temperature=1.0, sharpen_temperature=0.25)
    terms = loss(symmetric_case(loss), {})
    # p = softmax(1, 0); sharpened targets t = (e^4, 1)/(e^4+1); the 2x2 target matrix
    # is already balanced, so Sinkhorn leaves it unchanged.
    ce = -(E**4 / (E**4 + 1)) * math.log(E / (E + 1)) - (1 / (E**4 + 1)) * math.log(1 / (E + 1))
    assert terms["ce"].item() == pytest.approx(ce, rel=1e-12)
    assert terms["me_max"].item() == pytest.approx(0.0, abs=1e-15)  # uniform p̄
    assert terms["entropy_pbar"].item() == pytest.approx(math.log(2), rel=1e-12)
    assert terms["loss"].item() == pytest.approx(ce, rel=1e-12)
    torch.testing.assert_close(loss.last_mean_probs, torch.tensor([0.5, 0.5], dtype=torch.float64))


def test_pmsn_kl_by_hand():
    tau = 0.5
    loss = prototype_loss("pmsn_loss", num_prototypes=2, embed_dim=2, temperature=1.0, regularization_weight=2.0,
                          prior={"NAME": "power_law", "PARAMS": {"tau": tau}})
    terms = loss(symmetric_case(loss), {})
    pi = [1 / (1 + 2**-tau), 2**-tau / (1 + 2**-tau)]
    kl = 0.5 * math.log(0.5 / pi[0]) + 0.5 * math.log(0.5 / pi[1])
    assert terms["kl_prior"].item() == pytest.approx(kl, rel=1e-12)
    assert terms["loss"].item() == pytest.approx(terms["ce"].item() + 2.0 * kl, rel=1e-12)


def test_me_max_formula_on_skewed_mean_probs():
    loss = prototype_loss("msn_loss", num_prototypes=3, embed_dim=3)
    p = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)
    terms, weighted = loss.regularizer(p)
    expected = 0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1) + math.log(3)
    assert terms["me_max"].item() == pytest.approx(expected, rel=1e-12)
    assert weighted.item() == pytest.approx(expected, rel=1e-12)


def random_views(seed, n=6, dim=4, anchors=3):
    g = torch.Generator().manual_seed(seed)
    student = [torch.randn(n, dim, generator=g, dtype=torch.float64) for _ in range(anchors)]
    teacher = [torch.randn(n, dim, generator=g, dtype=torch.float64)]
    return student, teacher


@pytest.mark.parametrize("sinkhorn_prior", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_pmsn_with_uniform_prior_equals_msn(sinkhorn_prior, label_smoothing):
    common = dict(num_prototypes=7, embed_dim=4, label_smoothing=label_smoothing)
    msn = prototype_loss("msn_loss", regularization_weight=1.5, **common)
    pmsn = prototype_loss("pmsn_loss", prior={"NAME": "uniform"}, regularization_weight=1.5, sinkhorn_prior=sinkhorn_prior,
                          **common)
    pmsn.load_state_dict(msn.state_dict())
    results = []
    for loss in (msn, pmsn):
        student, teacher = random_views(3)
        student = [s.requires_grad_(True) for s in student]
        terms = loss(make_output(student, teacher), {})
        terms["loss"].backward()
        results.append((terms, [s.grad for s in student], loss.prototypes.grad))
    (m_terms, m_grads, m_pgrad), (p_terms, p_grads, p_pgrad) = results
    torch.testing.assert_close(p_terms["loss"], m_terms["loss"], rtol=0, atol=1e-12)
    torch.testing.assert_close(p_terms["kl_prior"], m_terms["me_max"], rtol=0, atol=1e-12)
    torch.testing.assert_close(p_terms["ce"], m_terms["ce"], rtol=0, atol=1e-12)
    for a, b in zip(p_grads, m_grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    torch.testing.assert_close(p_pgrad, m_pgrad, rtol=0, atol=1e-12)


def reference_msn(anchors, target, prototypes, tau=0.1, sharpen=0.25, iterations=3, smoothing=0.0, weight=1.0):
    """Straight from the MSN paper: smoothed one-hot prototype labels, p^(1/T), Sinkhorn, CE, me-max."""
    k = prototypes.shape[0]
    labels = torch.full((k, k), smoothing / k, dtype=prototypes.dtype) + (1 - smoothing) * torch.eye(k, dtype=prototypes.dtype)

    def predict(z, protos):
        return torch.softmax(F.normalize(z, dim=1) @ F.normalize(protos, dim=1).T / tau, dim=1) @ labels

    probs = predict(torch.cat(anchors), prototypes)
    with torch.no_grad():
        t = predict(target, prototypes) ** (1 / sharpen)
        t = t / t.sum(dim=1, keepdim=True)
        q = t.T / t.sum()
        for _ in range(iterations):
            q = q / q.sum(dim=1, keepdim=True) / k
            q = q / q.sum(dim=0, keepdim=True) / q.shape[1]
        t = (q * q.shape[1]).T.repeat(len(anchors), 1)
    ce = torch.mean(torch.sum(-t * torch.log(probs), dim=1))
    p_bar = probs.mean(dim=0)
    return ce + weight * (torch.sum(p_bar * torch.log(p_bar)) + math.log(k))


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_msn_matches_reference_value_and_prototype_gradient(smoothing):
    loss = prototype_loss("msn_loss", num_prototypes=5, embed_dim=4, label_smoothing=smoothing, regularization_weight=0.7)
    student, teacher = random_views(5)
    value = loss(make_output(student, teacher), {})["loss"]
    value.backward()
    prototypes = loss.prototypes.detach().clone().requires_grad_(True)
    expected = reference_msn(student, teacher[0], prototypes, smoothing=smoothing, weight=0.7)
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-12)
    expected.backward()
    torch.testing.assert_close(loss.prototypes.grad, prototypes.grad, rtol=1e-10, atol=1e-12)


def test_msn_reference_prototype_gradient_is_right():
    # The reference used above, checked by finite differences with its targets frozen.
    student, teacher = random_views(6)
    loss = prototype_loss("msn_loss", num_prototypes=5, embed_dim=4)
    frozen = loss.prototypes.detach().clone()

    def with_frozen_targets(prototypes):
        anchors = torch.cat(student)
        probs = torch.softmax(F.normalize(anchors, dim=1) @ F.normalize(prototypes, dim=1).T / 0.1, dim=1)
        targets = loss.targets(teacher[0], frozen).repeat(len(student), 1)
        p_bar = probs.mean(dim=0)
        return (-(targets * probs.log()).sum(1)).mean() + (p_bar * p_bar.log()).sum() + math.log(5)

    assert torch.autograd.gradcheck(with_frozen_targets, (frozen.clone().requires_grad_(True),))
    torch.testing.assert_close(
        with_frozen_targets(frozen), reference_msn(student, teacher[0], frozen), rtol=1e-12, atol=1e-12
    )


def test_sinkhorn_marginals_after_iterations():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(12, 5, generator=g, dtype=torch.float64) * 3, dim=1)
    three = sinkhorn_knopp(probs, iterations=3)
    torch.testing.assert_close(three.sum(dim=1), torch.ones(12, dtype=torch.float64))  # each sample's mass is 1
    many = sinkhorn_knopp(probs, iterations=200)
    torch.testing.assert_close(many.sum(dim=0), torch.full((5,), 12 / 5, dtype=torch.float64))  # equal clusters
    prior = torch.tensor([0.4, 0.3, 0.15, 0.1, 0.05], dtype=torch.float64)
    skewed = sinkhorn_knopp(probs, iterations=200, prototype_marginals=prior)
    torch.testing.assert_close(skewed.sum(dim=0), prior * 12)
    # Fewer iterations are closer to balanced than the input, but not exactly balanced.
    gap = lambda q: (q.sum(dim=0) - 12 / 5).abs().max()
    assert gap(many) < gap(three) < gap(probs)


def test_sinkhorn_survives_an_unused_prototype():
    probs = torch.tensor([[1.0, 0.0, 1e-3], [0.5, 0.0, 0.5]], dtype=torch.float64)
    out = sinkhorn_knopp(probs, iterations=3)
    assert torch.isfinite(out).all() and (out[:, 1] == 0).all()


def test_prototypes_are_a_parameter_with_msn_init():
    loss = build_loss({"NAME": "msn_loss", "PARAMS": {"num_prototypes": 64, "embed_dim": 16}})
    names = [n for n, _ in loss.named_parameters()]
    assert names == ["prototypes"]
    assert loss.prototypes.shape == (64, 16)
    assert loss.prototypes.abs().max() <= 1 / math.sqrt(16)
    assert set(loss.state_dict()) == {"prototypes"}  # the prior buffer is rebuilt from the config


def test_anchor_views_are_all_matched_to_the_single_target():
    loss = prototype_loss("msn_loss", num_prototypes=5, embed_dim=4, sinkhorn_iterations=0)
    student, teacher = random_views(7, anchors=2)
    both = loss(make_output(student, teacher), {})["ce"]
    singles = [loss(make_output([s], teacher), {})["ce"] for s in student]
    torch.testing.assert_close(both, (singles[0] + singles[1]) / 2)


@pytest.mark.parametrize("name", ["msn_loss", "pmsn_loss"])
def test_clear_errors(name):
    loss = prototype_loss(name, num_prototypes=5, embed_dim=4)
    student, teacher = random_views(8)
    with pytest.raises(ValueError, match="ONE target view"):
        loss(make_output(student, teacher * 2), {})
    with pytest.raises(ValueError, match="embed_dim=4"):
        loss(make_output([torch.randn(6, 3, dtype=torch.float64)], [torch.randn(6, 3, dtype=torch.float64)]), {})
    with pytest.raises(ValueError, match="teacher views"):
        loss(make_output(student, None), {})
    for bad in ({"temperature": 0}, {"sharpen_temperature": -1.0}, {"num_prototypes": 1}, {"label_smoothing": 1.0},
                {"sinkhorn_iterations": 1.5}, {"embed_dim": "256"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            build_loss({"NAME": name, "PARAMS": bad})


def test_pmsn_rejects_a_bad_prior():
    with pytest.raises(ValueError, match="sinkhorn_prior"):
        build_loss({"NAME": "pmsn_loss", "PARAMS": {"sinkhorn_prior": "yes"}})
    with pytest.raises(Exception, match="power_law"):
        build_loss({"NAME": "pmsn_loss", "PARAMS": {"prior": {"NAME": "power_lw"}}})
